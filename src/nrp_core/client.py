"""``NrpCore``: the nrp-client compatible Python client, running the loop in this process.

The constructor, method names, arguments and return values are those of PyPI ``nrp-client`` 1.4.0;
instead of spawning ``NRPCoreSim`` and talking gRPC, the client runs the FTILoop in the caller's
process (engines still run in their own processes unless configured ``InProcess``). A state
machine guards every call: ``initialize`` leads from ``Created`` to ``Initialized``; ``run_loop``
and ``run_until_timeout`` pass through ``Running`` to ``Stopped``; ``reset`` goes back to
``Initialized`` and ``shutdown`` to ``Created``; a failure leads to ``Failed``, where only
``shutdown`` is allowed (the table ``_ALLOWED``). Illegal calls raise :class:`NrpCoreStateError`
(a ``ConnectionError``, as the original's ``Can't process request``), and any exception inside a
legal call moves the simulation to ``Failed`` and raises ``RuntimeError`` naming the failing engine
or function, its file and line, with the traceback.

Typical use::

    client = NrpCore("localhost:5345", experiment_folder="experiments/tf_exchange")
    client.initialize()
    done, trajectory = client.run_loop(10)
    client.shutdown()
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from nrp_core.data.nrp_json import JsonDataPack
from nrp_core.datapacks import DataPackInterface
from nrp_core.errors import NrpCoreStateError

__all__ = ["NrpCore", "NrpCoreStateError"]

logger = logging.getLogger(__name__)

CREATED = "Created"
INITIALIZED = "Initialized"
RUNNING = "Running"
STOPPED = "Stopped"
FAILED = "Failed"

_ALLOWED = {
    "initialize": (CREATED,),
    "run_loop": (INITIALIZED, STOPPED),
    "run_until_timeout": (INITIALIZED, STOPPED),
    "reset": (INITIALIZED, STOPPED),
    "stop": (INITIALIZED, STOPPED, RUNNING),
    "shutdown": (INITIALIZED, STOPPED, RUNNING, FAILED),
}
_HINTS = {
    CREATED: "call initialize() first",
    INITIALIZED: "the simulation is already initialized",
    RUNNING: "a loop is running; call stop() and wait for it",
    STOPPED: "the simulation is already initialized",
}
_LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "off": logging.CRITICAL + 10,
}


def log_level(name: str) -> int:
    """The :mod:`logging` level for an nrp-core log level name (``trace`` ... ``off``)."""
    try:
        return _LOG_LEVELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown log level '{name}'") from None


def log_formatter() -> logging.Formatter:
    """``[time] [logger] [level] message`` with the time in ISO 8601 UTC (``2026-12-05T15:52:28Z``)."""
    formatter = logging.Formatter(
        "[%(asctime)s] [%(name)s] [%(levelname)s] %(message)s", datefmt="%Y-%m-%dT%H:%M:%SZ"
    )
    formatter.converter = time.gmtime
    return formatter


def log_file_path(experiment_dir: Path, filename: str) -> Path:
    """Where ``log_output`` goes: ``<experiment>/logs/<file>`` if ``logs/`` exists, else beside the config."""
    path = Path(filename)
    if path.is_absolute():
        return path
    logs = experiment_dir / "logs"
    return (logs if logs.is_dir() else experiment_dir) / path


class NrpCore:
    """Drive one simulation: initialize, run, reset and shut it down.

    Args:
        address: ``host:port`` of the original's gRPC server; accepted and ignored.
        experiment_folder: the experiment directory; when empty, the directory part of
            ``config_file``, else the current directory.
        config_file: the simulation config, absolute or relative to ``experiment_folder``.
        args: extra command-line text, split on spaces: ``-o KEY=VALUE`` overrides and the log
            options of ``NRPCoreSim`` (``--cloglevel``, ``--logoutput``, ``--logfilename``).
        log_output: file receiving the engine processes' output and the runtime's log records (in
            ``<experiment>/logs/`` if that folder exists); ``None`` or ``""`` keeps engine output on
            the console. ``sys.stdout`` of this process is never redirected.
        server_timeout, docker_daemon_address, image_name, get_archives, compose_file: accepted and
            ignored (gRPC and docker launchers of the original).
        overrides: (ours) ``-o`` overrides applied after those in ``args``; values may contain
            spaces here.

    Raises:
        FileNotFoundError: the config file does not exist.
        nrp_core.config.ConfigError: the config is invalid.
    """

    def __init__(
        self,
        address: str,
        experiment_folder: str = "",
        config_file: str = "simulation_config.json",
        args: str = "",
        log_output: str | None = ".console_output.log",
        server_timeout: float = 10,
        docker_daemon_address: str = "unix:///var/run/docker.sock",
        image_name: str = "",
        get_archives: list[str] | None = None,
        compose_file: str = "",
        *,
        overrides: Sequence[str] = (),
    ) -> None:
        from nrp_core.config import load_simulation_config
        from nrp_core.sim_options import parse_client_args

        self.address = address
        self._state = CREATED
        self._error = ""
        self._loop: Any = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._json_datapack_out_buffer: list[JsonDataPack] = []
        self._proto_datapack_out_buffer: list[DataPackInterface] = []
        self._output: IO[Any] | None = None
        self._log_handler: logging.Handler | None = None

        options = parse_client_args(args)
        self.config, self.experiment_dir = load_simulation_config(
            config_file, experiment_folder or None, [*options.overrides, *overrides]
        )
        self._log_mode = options.logoutput or ("all" if log_output else None)
        self._log_filename = options.logfilename or log_output or ".console_output.log"
        if options.cloglevel:
            logging.getLogger("nrp_core").setLevel(log_level(options.cloglevel))

    # -- state ---------------------------------------------------------------------------------------

    def current_state(self) -> str:
        """``Created``, ``Initialized``, ``Running``, ``Stopped`` or ``Failed``."""
        return self._state

    @property
    def simulation_time_ns(self) -> int:
        """The loop's current simulation time in ns (0 before ``initialize``); thread-safe."""
        loop = self._loop
        return int(loop.sim_time) if loop is not None else 0

    def _check(self, action: str) -> None:
        state = self._state
        if state == FAILED and action != "shutdown":
            raise RuntimeError(self._failed_message())
        if state not in _ALLOWED[action]:
            hint = _HINTS.get(state, "")
            raise NrpCoreStateError(
                f"{action}() is not allowed in state '{state}'" + (f": {hint}" if hint else "")
            )

    def _failed_message(self) -> str:
        return f'Request failed with error "{self._error}". The only possible action now is "shutdown()".'

    def _fail(self, exc: BaseException) -> RuntimeError:
        self._state = FAILED
        self._error = str(exc) or type(exc).__name__
        logger.error("simulation failed: %s", self._error)
        return RuntimeError(self._failed_message())

    # -- output --------------------------------------------------------------------------------------

    def _open_output(self) -> IO[Any] | int | None:
        mode = self._log_mode
        if mode == "silent":
            return subprocess.DEVNULL
        if mode not in ("all", "engines"):
            return None
        path = log_file_path(self.experiment_dir, self._log_filename)
        self._output = open(path, "a", buffering=1)  # noqa: SIM115 - closed by shutdown()
        if mode == "all":
            handler = logging.StreamHandler(self._output)
            handler.setFormatter(log_formatter())
            logging.getLogger("nrp_core").addHandler(handler)
            self._log_handler = handler
        return self._output

    def _close_output(self) -> None:
        if self._log_handler is not None:
            logging.getLogger("nrp_core").removeHandler(self._log_handler)
            self._log_handler = None
        if self._output is not None:
            self._output.close()
            self._output = None

    # -- client datapacks ----------------------------------------------------------------------------

    def set_json_datapack(self, datapack_name: str, engine_name: str, payload: Any) -> None:
        """Buffer a JSON datapack; it joins the external pool at the next ``run_loop`` or ``reset``.

        Raises:
            TypeError: ``payload`` is not JSON-convertible.
        """
        self._json_datapack_out_buffer.append(JsonDataPack.from_json(datapack_name, engine_name, payload))

    def set_proto_datapack(self, datapack_name: str, engine_name: str, payload: Any) -> None:
        """Buffer a protobuf datapack holding a copy of ``payload``, a message of the NRP protobuf
        packages; it joins the external pool at the next ``run_loop`` or ``reset``.

        Raises:
            TypeError: ``payload`` is not a message of the NRP protobuf packages.
        """
        from google.protobuf.message import Message

        from nrp_core.data.nrp_protobuf import datapack_from_message

        if not isinstance(payload, Message):
            raise TypeError(f"payload must be a protobuf message, got {type(payload).__name__}")
        copy = type(payload)()
        copy.CopyFrom(payload)
        try:
            datapack = datapack_from_message(datapack_name, engine_name, copy)
        except KeyError as exc:
            raise TypeError(exc.args[0]) from None
        self._proto_datapack_out_buffer.append(datapack)

    def _flush_buffer(self) -> None:
        buffered: list[DataPackInterface] = [
            *self._json_datapack_out_buffer,
            *self._proto_datapack_out_buffer,
        ]
        self._json_datapack_out_buffer = []
        self._proto_datapack_out_buffer = []
        self._loop.set_external(buffered)

    @staticmethod
    def _json_data_datapacks(json_data: Any) -> list[JsonDataPack]:
        if json_data is None:
            return []
        if not isinstance(json_data, Mapping) or not all(isinstance(v, Mapping) for v in json_data.values()):
            raise TypeError(
                "json_data must be a mapping {engine_name: {datapack_name: payload}}, "
                f"got {type(json_data).__name__}"
            )
        return [
            JsonDataPack.from_json(datapack_name, engine_name, payload)
            for engine_name, datapacks in json_data.items()
            for datapack_name, payload in datapacks.items()
        ]

    # -- requests ------------------------------------------------------------------------------------

    def initialize(self) -> list[Any]:
        """Launch and initialize the engines, load the functions.

        Returns:
            the datapacks requested by functions, fetched from all engines right after their
            initialization (engine config order, then datapack name order), as Python values.
        """
        from nrp_core.config import complete_engine_config
        from nrp_core.event_loop.runtime import create_runtime

        self._check("initialize")  # fail fast, e.g. while another thread runs the loop
        with self._lock:
            self._check("initialize")
            try:
                self._check_supported()
                output = self._open_output()
                engines = [
                    complete_engine_config(engine) for engine in self.config.get("EngineConfigs") or []
                ]
                self._loop = create_runtime(self.config, self.experiment_dir, engines, output)
                trajectory = self._loop.initialize()
                self._loop.take_trajectory()
            except Exception as exc:
                raise self._fail(exc) from exc
            self._state = INITIALIZED
            return trajectory

    def _check_supported(self) -> None:
        config = self.config
        if "ROSNode" in config:
            logger.info("ROSNode is configured but ROS is not supported: no ROS node is started")

    def _request_run(self, action: str, run_async: bool) -> None:
        """Fail fast on an illegal call (e.g. while another thread runs the loop), then clear the
        stop flag: a ``stop()`` issued from now on ends this run, even one issued before the run
        gets the lock or its thread starts. An async call reports an illegal call through its
        ``response`` list instead, as before."""
        try:
            self._check(action)
        except Exception:
            if not run_async:
                raise
            return
        self._stop.clear()

    def _run(self, body: Any) -> Any:
        self._state = RUNNING
        try:
            result = body()
        except Exception as exc:
            raise self._fail(exc) from exc
        self._state = STOPPED
        return result

    def run_loop(
        self,
        num_iterations: int,
        json_data: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        run_async: bool = False,
        response: list | None = None,
    ) -> Any:
        """Run ``num_iterations`` loop timesteps (0: until :meth:`stop`).

        Args:
            num_iterations: number of ``runLoop(dt)`` calls.
            json_data: ``{engine_name: {datapack_name: payload}}``, buffered as by
                :meth:`set_json_datapack` before the run.
            run_async: return a started ``Thread`` instead, which appends the result (or the
                exception) to ``response``.
            response: the list for ``run_async``.

        Returns:
            ``(done_flag, trajectory)``; the trajectory is non-empty only when the done flag is set.

        Raises:
            TypeError: ``json_data`` is not a mapping of mappings.
            NrpCoreStateError: not initialized, or already running.
            RuntimeError: the simulation failed.
        """
        extra = self._json_data_datapacks(json_data)
        self._request_run("run_loop", run_async)
        if run_async:
            return self._start_async(lambda: self._run_loop(num_iterations, extra), response)
        return self._run_loop(num_iterations, extra)

    def _run_loop(self, num_iterations: int, extra: list[JsonDataPack]) -> tuple[bool, list[Any]]:
        with self._lock:
            self._check("run_loop")
            self._json_datapack_out_buffer.extend(extra)

            def body() -> tuple[bool, list[Any]]:
                self._flush_buffer()
                self._loop.run(int(num_iterations), self._stop)
                done = self._loop.done
                return done, (self._loop.take_trajectory() if done else [])

            return self._run(body)

    def run_until_timeout(self, run_async: bool = False, response: list | None = None) -> Any:
        """Run until the status function's done flag or ``SimulationTimeout`` (from time 0).

        Buffered client datapacks are not sent.

        Returns:
            ``(done_flag, timeout_flag, trajectory)``.
        """
        self._request_run("run_until_timeout", run_async)
        if run_async:
            return self._start_async(self._run_until_timeout, response)
        return self._run_until_timeout()

    def _run_until_timeout(self) -> tuple[bool, bool, list[Any]]:
        with self._lock:
            self._check("run_until_timeout")

            def body() -> tuple[bool, bool, list[Any]]:
                done, timed_out = self._loop.run_until_timeout(self._stop)
                return done, timed_out, self._loop.take_trajectory()

            return self._run(body)

    def _start_async(self, call: Any, response: list | None) -> threading.Thread:
        sink = response if response is not None else []

        def target() -> None:
            try:
                sink.append(call())
            except BaseException as exc:  # delivered to the caller through ``response``
                sink.append(exc)

        thread = threading.Thread(target=target, name="nrp-core-run", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """End a running ``run_loop``/``run_until_timeout`` after the current step (any thread)."""
        self._check("stop")
        self._stop.set()

    def reset(self) -> list[Any]:
        """Send the buffered client datapacks, reset the engines and clocks, fetch fresh datapacks.

        Returns:
            the requested datapacks fetched after the reset.
        """
        self._check("reset")  # fail fast, e.g. while another thread runs the loop
        with self._lock:
            self._check("reset")
            try:
                self._flush_buffer()
                self._loop.reset()
                trajectory = self._loop.take_trajectory()
            except Exception as exc:
                raise self._fail(exc) from exc
            self._state = INITIALIZED
            return trajectory

    def shutdown(self) -> None:
        """Shut the engines down and stop their processes; the client returns to ``Created``."""
        self._check("shutdown")
        # Unconditionally: a run may hold the lock without being in state Running yet.
        self._stop.set()
        with self._lock:
            self._check("shutdown")
            loop, self._loop = self._loop, None
            try:
                if loop is not None:
                    errors = loop.shutdown()
                    for error in errors:
                        logger.warning("engine shutdown error: %s", error)
            finally:
                self._close_output()
                self._json_datapack_out_buffer = []
                self._proto_datapack_out_buffer = []
                self._state = CREATED
                self._error = ""

    def __del__(self) -> None:
        try:
            if getattr(self, "_state", CREATED) != CREATED:
                self.shutdown()
        except Exception:  # best effort at garbage collection or interpreter exit
            pass
