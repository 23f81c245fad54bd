"""The ``nest_json`` engine server: the six engine operations on top of NEST.

Initialize resets the NEST kernel, seeds it with ``NestRNGSeed``, picks a resolution that divides
``EngineTimestep`` and runs the brain script. Every step is one ``nest.Simulate``; the engine time
is NEST's biological time. Reset re-runs the brain script on a fresh kernel.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import traceback
import warnings
from typing import Any

from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE
from nrp_core.engines import experiment_path, nest_json

__all__ = ["NestEngineError", "NestEngineServer", "node_status", "set_node_status", "to_json_value"]

logger = logging.getLogger(__name__)

_NS_PER_MS = 1_000_000
_RESOLUTIONS_MS = (0.1, 0.05, 0.025, 0.02, 0.01, 0.005, 0.001)


def _kernel_api() -> Any:
    """NEST's low-level status calls, which ``NodeCollection.get``/``set`` end in (None if absent)."""
    try:
        from nest import nestkernel_api
    except ImportError:
        return None
    if hasattr(nestkernel_api, "llapi_get_nc_status") and hasattr(nestkernel_api, "llapi_set_nc_status"):
        return nestkernel_api
    return None


_KERNEL_API: Any = None
_KERNEL_API_CHECKED = False


def _kernel() -> Any:
    global _KERNEL_API, _KERNEL_API_CHECKED
    if not _KERNEL_API_CHECKED:
        _KERNEL_API, _KERNEL_API_CHECKED = _kernel_api(), True
    return _KERNEL_API


def node_status(nodes: Any) -> list[dict[str, Any]]:
    """``nest.GetStatus(nodes)`` as a list with one dict per node, without the deprecated call.

    Read with NEST's low-level call when available: ``NodeCollection.get()`` makes the same call, then
    reshapes its result for one node (about a third of the cost of a recorder's read).
    """
    kernel = _kernel()
    status = kernel.llapi_get_nc_status(nodes._datum) if kernel is not None else nodes.get()
    count = len(nodes)
    if count == 1 and kernel is None:
        return [status]
    return [{key: values[index] for key, values in status.items()} for index in range(count)]


def set_node_status(nodes: Any, data: dict[str, Any] | list[dict[str, Any]]) -> None:
    """``nest.SetStatus(nodes, data)``: one object for every node, or a list with one per node.

    A single object without list values is expanded to one copy per node first. The list goes to
    NEST's low-level call when available: ``NodeCollection.set`` makes the same call after reading
    the nodes' ``local`` flag and, for a single object, the first node's whole status (a recorder's
    events included), which costs some 40 times the write itself.
    """
    if isinstance(data, dict) and not any(isinstance(value, (list, tuple)) for value in data.values()):
        data = [data] * len(nodes)
    kernel = _kernel()
    if kernel is not None and isinstance(data, list) and len(data) == len(nodes) and nodes:
        kernel.llapi_set_nc_status(nodes._datum, data)
    else:
        nodes.set(data)


class NestEngineError(RuntimeError):
    """A NEST engine failed; the message names the engine and, for brain script errors, the file."""


def to_json_value(value: Any) -> Any:
    """Convert a NEST status value (numpy arrays and scalars, node collections, tuples) to JSON."""
    kind = type(value)
    if kind in (str, int, float, bool) or value is None:
        return value
    if kind is dict:
        return {str(k): to_json_value(v) for k, v in value.items()}
    if kind in (list, tuple):
        return [to_json_value(v) for v in value]
    tolist = getattr(value, "tolist", None)
    if tolist is not None:  # numpy arrays and scalars, NodeCollection
        return tolist()
    for plain in (bool, int, float, str):
        if isinstance(value, plain):
            return plain(value)
    return str(value)


class NestEngineServer:
    """Engine server for ``nest_json``.

    ``initialize``, ``run_loop``, ``set_datapacks``, ``get_datapacks``, ``reset`` and ``shutdown``
    take and return the same JSON documents as
    :class:`~nrp_core.engines.python_json.server_callbacks.EngineServer`.
    """

    def __init__(self) -> None:
        os.environ.setdefault("PYNEST_QUIET", "1")
        import nest

        self.nest = nest
        # nest.GetStatus/SetStatus are the documented datapack semantics (a list with one object
        # per node); NEST 3.10 marks them deprecated on every call.
        warnings.filterwarnings("ignore", message=r"\s*(Get|Set)Status\(\) is deprecated")
        warnings.filterwarnings("ignore", message=r"\s*Provided for backward compatibility only")
        self._name = "nest"
        self._config: dict[str, Any] = {}
        self._brain_file = ""
        self._seed = 0
        self._resolution_ms = 0.1
        self._resolution_ns = 100_000
        self._time_ns = 0
        self._initialized = False
        self.engine_type = "nest_json"
        self.brain_source: str | None = None
        """The brain script's text when it comes with the request (``nest_server``), else read from file."""
        self.brain_globals: dict[str, Any] = {}
        """Names the brain script finds defined (``nest_server`` brains use ``nrp_core`` unimported)."""

    # -- helpers ------------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.engine_type} engine '{self._name}'"

    def _kernel_setup(self) -> None:
        nest = self.nest
        nest.ResetKernel()
        if hasattr(nest, "VerbosityLevel"):  # NEST >= 3.9
            nest.verbosity = nest.VerbosityLevel.ERROR
        else:
            nest.set_verbosity("M_ERROR")
        nest.SetKernelStatus({"rng_seed": self._seed, "resolution": self._resolution_ms})

    def _choose_resolution(self, timestep_s: float) -> float:
        step_ms = timestep_s * 1e3
        for resolution in _RESOLUTIONS_MS:
            ratio = step_ms / resolution
            if ratio >= 1 and math.isclose(ratio, round(ratio), rel_tol=0, abs_tol=1e-6):
                return resolution
        raise NestEngineError(
            f"{self._where()}: EngineTimestep {timestep_s} s is not a whole number of NEST resolution "
            f"steps (tried {', '.join(str(r) for r in _RESOLUTIONS_MS)} ms)"
        )

    def _run_brain(self) -> None:
        nest_json._devices.clear()
        self._kernel_setup()
        path = experiment_path(self._config, self._brain_file)
        if self.brain_source is not None:
            source = self.brain_source
        elif not path.is_file():
            raise NestEngineError(
                f"{self._where()}: brain script (NestInitFileName) '{self._brain_file}' not found ({path})"
            )
        else:
            source = path.read_text()
        directory = str(path.parent)
        if directory not in sys.path and path.parent.is_dir():
            sys.path.insert(0, directory)
        namespace = {**self.brain_globals, "__name__": "__nest_brain__", "__file__": str(path)}
        try:
            code = compile(source, str(path), "exec")
            exec(code, namespace)
        except Exception as exc:
            line = getattr(exc, "lineno", 0) if isinstance(exc, SyntaxError) else 0
            for frame in traceback.extract_tb(exc.__traceback__):
                if frame.filename == str(path):
                    line = frame.lineno or line
            raise NestEngineError(
                f"{self._where()}: error in brain script '{self._brain_file}' line {line}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        self._register_populations(namespace.get("populations"))
        nest = self.nest
        # A brain script usually calls nest.ResetKernel() itself, which drops our seed; the seed may
        # be set again after nodes exist, the resolution may not, so that one is checked instead.
        if nest.GetKernelStatus("rng_seed") != self._seed:
            nest.SetKernelStatus({"rng_seed": self._seed})
        resolution = float(nest.GetKernelStatus("resolution"))
        step_ms = self._timestep_s * 1e3
        ratio = step_ms / resolution
        if not math.isclose(ratio, round(ratio), rel_tol=0, abs_tol=1e-6) or ratio < 1:
            raise NestEngineError(
                f"{self._where()}: EngineTimestep {self._timestep_s} s is not a whole multiple of the "
                f"NEST resolution {resolution} ms set by '{self._brain_file}'"
            )
        self._resolution_ms = resolution
        self._resolution_ns = round(resolution * _NS_PER_MS)
        self._time_ns = round(float(nest.GetKernelStatus("biological_time")) * _NS_PER_MS)

    def _register_populations(self, populations: Any) -> None:
        """Register the brain's ``populations`` dict (nrp-core's ``nest_server`` brains name devices so)."""
        if populations is None:
            return
        if not isinstance(populations, dict):
            raise NestEngineError(
                f"{self._where()}: 'populations' in '{self._brain_file}' must be a dict of datapack name to "
                f"node collection, got {type(populations).__name__}"
            )
        for name, nodes in populations.items():
            if nest_json._devices.get(name) is not nodes:
                try:
                    nest_json.RegisterDataPack(str(name), nodes)
                except ValueError as exc:
                    raise NestEngineError(
                        f"{self._where()}: populations of '{self._brain_file}': {exc}"
                    ) from exc

    # -- engine operations ---------------------------------------------------------------------------

    def initialize(self, request: dict[str, Any]) -> None:
        """Set up the kernel and run the brain script named by ``NestInitFileName``."""
        if list(request.get("TimeRatio", [1, 1000000000])) != [1, 1000000000]:
            raise NestEngineError("NestJSONEngine only support nanoseconds as TimeRatio")
        self._config = request
        self._name = str(request.get("EngineName", "nest"))
        self._brain_file = str(request.get("NestInitFileName", ""))
        if not self._brain_file:
            raise NestEngineError(f"{self._where()}: NestInitFileName is required")
        self._seed = int(request.get("NestRNGSeed", 0) or 0)
        # NEST seeds must be in [1, 2^31 - 1]; 0 (the schema default) means NEST's own default seed.
        if self._seed <= 0:
            self._seed = 143202461
        self._timestep_s = float(request.get("EngineTimestep", 0.01))
        self._resolution_ms = self._choose_resolution(self._timestep_s)
        self._run_brain()
        self._initialized = True

    def run_loop(self, request: dict[str, Any]) -> dict[str, int]:
        """Simulate ``time_step`` ns (rounded to whole resolution steps); return the engine time.

        The engine time is NEST's biological time, kept here in integer ns (the kernel's value in ms
        is a float and reading the kernel status every step would cost more than a small step).
        """
        time_step = int(request["time_step"])
        if time_step < 0:
            raise NestEngineError(f"{self._where()}: negative time step {time_step}")
        steps = round(time_step / _NS_PER_MS / self._resolution_ms)
        if steps > 0:
            try:
                self.nest.Simulate(steps * self._resolution_ms)
            except Exception as exc:
                raise NestEngineError(
                    f"{self._where()}: nest.Simulate failed: {type(exc).__name__}: {exc}"
                ) from exc
            self._time_ns += steps * self._resolution_ns
        return {"time": self._time_ns}

    def set_datapacks(self, request: dict[str, Any] | None) -> None:
        """Apply each datapack to its node collection (``nest.SetStatus`` semantics)."""
        if not request:
            return
        devices = nest_json._devices
        for name, entry in request.items():
            if not isinstance(entry, dict) or not {"data", "engine_name", "type"} <= entry.keys():
                raise NestEngineError(
                    f"Malformed DataPack. Expected keys: 'data', 'engine_name', 'type'; got {entry!r}"
                )
            if entry["type"] != JSON_DATAPACK_TYPE:
                raise NestEngineError(f"{self._where()}: DataPack '{name}' is not a JSON datapack")
            if name not in devices:
                raise NestEngineError(
                    f"{self._where()}: Attempting to set data on an unregistered DataPack ({name}); "
                    f"registered: {', '.join(sorted(devices)) or 'none'}"
                )
            data = entry["data"]
            if data is None:
                continue
            if not isinstance(data, (dict, list)):
                raise NestEngineError(
                    f"{self._where()}: DataPack '{name}' must hold an object or an array of objects"
                )
            try:
                set_node_status(devices[name], data)
            except Exception as exc:
                raise NestEngineError(
                    f"{self._where()}: SetStatus of DataPack '{name}' failed: {type(exc).__name__}: {exc}"
                ) from exc

    def get_datapacks(self, request: dict[str, Any] | None) -> dict[str, Any]:
        """Return ``nest.GetStatus`` of each requested node collection (``kernel``: kernel status)."""
        if not request:
            return {}
        devices = nest_json._devices
        reply: dict[str, Any] = {}
        for name, entry in request.items():
            engine = entry.get("engine_name") if isinstance(entry, dict) else None
            if engine is not None and engine != self._name:
                raise NestEngineError(f"Requesting DataPack '{name}' from incorrect engine {self._name}")
            if name == "kernel":
                data = to_json_value(self.nest.GetKernelStatus())
            elif name in devices:
                data = to_json_value(node_status(devices[name]))
            else:
                raise NestEngineError(
                    f"{self._where()}: Attempting to get data from an unregistered DataPack ({name}); "
                    f"registered: {', '.join(sorted(devices)) or 'none'}"
                )
            reply[name] = {"engine_name": self._name, "type": JSON_DATAPACK_TYPE, "data": data}
        return reply

    def reset(self, request: Any = None) -> None:
        """Reset the kernel and run the brain script again (time restarts at 0)."""
        self._run_brain()

    def shutdown(self, request: Any = None) -> None:
        """Release NEST's memory; the process may exit afterwards."""
        nest_json._devices.clear()
        if self._initialized:
            self.nest.ResetKernel()
            self._initialized = False


def make_server() -> NestEngineServer:
    """A fresh :class:`NestEngineServer` (the in-process server factory of ``nest_json``)."""
    return NestEngineServer()
