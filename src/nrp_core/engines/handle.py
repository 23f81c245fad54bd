"""The loop's view of an engine (:class:`EngineHandle`), the engine types, :class:`EngineError`, and
the engine-neutral wire form of datapacks shared by every transport.

Transports: :mod:`~nrp_core.engines.in_process` (``{"LaunchType": "InProcess"}``),
:mod:`~nrp_core.engines.process` (own process over a local channel, the default),
:mod:`~nrp_core.engines.http` (a JSON engine server started elsewhere) and
:mod:`~nrp_core.engines.grpc` (an ``EngineGrpcService`` started elsewhere);
:func:`nrp_core.engines.launch.create_engine` picks one.

Datapacks travel as ``{name: {"engine_name", "type", "data"}}`` (JSON) or ``{name: {"engine_name",
"type", "proto"}}`` (a serialized protobuf message whose full name is ``type``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from nrp_core.config import timestep_to_ns
from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE, JsonDataPack
from nrp_core.datapacks import DataPackInterface
from nrp_core.errors import EngineError

__all__ = ["ENGINE_TYPES", "TIME_RATIO", "EngineError", "EngineHandle", "register_engine_type"]

TIME_RATIO = [1, 1000000000]

# EngineType -> (worker module, "module:factory" building the engine server in-process)
ENGINE_TYPES: dict[str, tuple[str, str]] = {
    "python_json": (
        "nrp_core.engines.python_json.worker",
        "nrp_core.engines.python_json.server_callbacks:EngineServer",
    ),
    "python_grpc": (
        "nrp_core.engines.python_grpc.worker",
        "nrp_core.engines.python_grpc.server:make_server",
    ),
    "py_sim": ("nrp_core.engines.py_sim.worker", "nrp_core.engines.py_sim.server:make_server"),
    "nest_json": ("nrp_core.engines.nest_json.worker", "nrp_core.engines.nest_json.server:make_server"),
    "datatransfer_grpc_engine": (
        "nrp_core.engines.datatransfer.worker",
        "nrp_core.engines.datatransfer.server:make_server",
    ),
    "nest_server": ("nrp_core.engines.nest_server.worker", "nrp_core.engines.nest_server.server:make_server"),
}


def register_engine_type(engine_type: str, worker_module: str, server_factory: str) -> None:
    """Make ``engine_type`` launchable (e.g. ``py_sim``): its worker module and server factory.

    Args:
        engine_type: the ``EngineType`` value.
        worker_module: module run with ``python -m`` for engine processes.
        server_factory: ``"module:attribute"`` of a zero-argument callable returning an engine
            server (``initialize``, ``run_loop``, ``set_datapacks``, ``get_datapacks``, ``reset``,
            ``shutdown``, as :class:`~nrp_core.engines.python_json.server_callbacks.EngineServer`)
            for in-process engines.
    """
    ENGINE_TYPES[engine_type] = (worker_module, server_factory)


def _get_request(requested: Mapping[str, str], engine_name: str) -> dict[str, dict[str, str]]:
    return {
        name: {"engine_name": engine_name, "type": type_ or JSON_DATAPACK_TYPE}
        for name, type_ in sorted(requested.items())
    }


def _datapacks_from_reply(engine_name: str, fetched: Mapping[str, Any] | None) -> list:
    """Turn a ``get_datapacks`` reply into datapack objects (name order)."""
    result: list[DataPackInterface] = []
    if not fetched:
        return result
    for name, entry in fetched.items():
        if "data" not in entry:
            payload = entry.get("proto")
            if payload is not None:
                result.append(_proto_datapack(engine_name, name, entry.get("type", ""), payload))
            else:
                result.append(DataPackInterface(name, engine_name, entry.get("type", JSON_DATAPACK_TYPE)))
            continue
        try:
            result.append(JsonDataPack.from_json(name, engine_name, entry["data"]))
        except TypeError as exc:
            raise EngineError(
                engine_name, "get_datapacks", f"datapack '{name}' does not hold JSON data: {exc}"
            ) from exc
    return result


_from_bytes: Callable[[str, str, str, bytes], DataPackInterface] | None = None


def _proto_datapack(engine_name: str, name: str, type_name: str, payload: bytes) -> DataPackInterface:
    global _from_bytes
    if _from_bytes is None:  # imported on first use: JSON-only simulations never load protobuf
        from nrp_core.data.nrp_protobuf import datapack_from_bytes

        _from_bytes = datapack_from_bytes
    try:
        return _from_bytes(name, engine_name, type_name, payload)
    except Exception as exc:
        raise EngineError(
            engine_name, "get_datapacks", f"datapack '{name}' of type '{type_name}' cannot be read: {exc}"
        ) from exc


def _set_request(datapacks: Iterable[DataPackInterface], copy: bool) -> dict[str, Any]:
    """The ``set_datapacks`` request for ``datapacks``; ``copy`` when the engine shares our memory."""
    request: dict[str, Any] = {}
    for datapack in datapacks:
        if type(datapack) is JsonDataPack:
            data = datapack.to_json() if copy else datapack._data._value
        elif datapack.isEmpty():
            continue
        elif isinstance(datapack, JsonDataPack):
            data = datapack.to_json()
        elif (to_bytes := getattr(datapack, "to_bytes", None)) is not None:  # a protobuf datapack
            request[datapack._name] = {
                "engine_name": datapack._engine_name,
                "type": datapack._type,
                "proto": to_bytes(),
            }
            continue
        else:
            raise TypeError(
                f"datapack '{datapack._name}' is a {type(datapack).__name__}: "
                "engines exchange JSON and protobuf datapacks only"
            )
        request[datapack._name] = {"engine_name": datapack._engine_name, "type": datapack._type, "data": data}
    return request


class EngineHandle:
    """The loop's view of one engine.

    Life cycle: :meth:`start` (launch, non-blocking), :meth:`wait_ready`, :meth:`initialize`; then
    per batch :meth:`finish_step` (engine time and requested datapacks after the running step) and
    :meth:`begin_step` (datapacks to set, then advance); :meth:`reset`; :meth:`shutdown`;
    :meth:`close` (always, also after failures).
    """

    def __init__(self, config: Mapping[str, Any], experiment_dir: Path) -> None:
        self.config = dict(config)
        self.name: str = config["EngineName"]
        self.experiment_dir = experiment_dir
        self.timestep_ns = timestep_to_ns(config.get("EngineTimestep", 0.01))
        timeout = float(config.get("EngineCommandTimeout", 0.0) or 0.0)
        self.command_timeout: float | None = timeout if timeout > 0 else None
        self.engine_time = 0
        self._requested: dict[str, str] = {}
        self._ready: list[DataPackInterface] | None = None

    # -- interface ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Launch the engine (non-blocking where possible)."""

    def wait_ready(self) -> None:
        """Block until the engine accepts requests."""

    def initialize(self, requested: Mapping[str, str]) -> list[DataPackInterface]:
        """Send ``initialize`` and return the requested datapacks (name order)."""
        raise NotImplementedError

    def begin_step(self, datapacks: Iterable[DataPackInterface], time_step: int | None) -> None:
        """Set ``datapacks`` on the engine, then advance it by ``time_step`` ns (None: no step)."""
        raise NotImplementedError

    def finish_step(self) -> list[DataPackInterface]:
        """Wait for the running step; update :attr:`engine_time`; return the requested datapacks."""
        raise NotImplementedError

    def reset(self, datapacks: Iterable[DataPackInterface]) -> list[DataPackInterface]:
        """Set ``datapacks``, reset the engine (time 0) and return the requested datapacks."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Send ``shutdown``."""
        raise NotImplementedError

    def settle(self) -> None:
        """Wait for a running step, keeping its result for the next :meth:`finish_step`."""

    def close(self) -> None:
        """Release the engine (stop its process); idempotent."""

    @property
    def pid(self) -> int | None:
        return None

    def _engine_config(self) -> dict[str, Any]:
        request = dict(self.config)
        request["TimeRatio"] = list(TIME_RATIO)
        return request


def _load_factory(spec: str) -> Callable[[], Any]:
    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute)
