"""Engines as the loop sees them: engine processes, in-process engines and remote engine servers.

:func:`create_engine` turns one defaulted engine config into an :class:`EngineHandle`:

- :class:`EngineProcess` (``EngineLaunchCommand`` ``BasicFork``, the default) runs
  ``<python> -m nrp_core.engines.<type>.worker <EngineProcStartParams...> --engine=<name>
  --control-fd=<n>`` in the experiment directory with ``EngineEnvParams`` applied, and talks to it
  over a :class:`~nrp_core.engines.channel.Channel` on a ``socketpair``: one round trip per batch
  carries the datapacks to set and the step, and brings back the engine time and the requested
  datapacks after the step.
- :class:`InProcessEngine` (``{"LaunchType": "InProcess"}``) drives the same engine server object in
  the loop's own process, synchronously in the loop thread.

Both report failures as :class:`EngineError`, naming the engine, the operation, the user's file and
line and carrying the engine-side traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from nrp_core.config import ENGINE_PROC_CMDS, timestep_to_ns
from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE, JsonDataPack
from nrp_core.datapacks import DataPackInterface
from nrp_core.engines.channel import Channel, error_details

__all__ = [
    "ENGINE_TYPES",
    "EngineError",
    "EngineHandle",
    "EngineProcess",
    "ExternalProcess",
    "HttpEngine",
    "InProcessEngine",
    "create_engine",
    "register_engine_type",
]

logger = logging.getLogger(__name__)

TIME_RATIO = [1, 1000000000]
SHUTDOWN_GRACE_S = 10.0
READY_TIMEOUT_S = 60.0

# EngineType -> (worker module, "module:factory" building the engine server in-process)
ENGINE_TYPES: dict[str, tuple[str, str]] = {
    "python_json": (
        "nrp_core.engines.python_json.worker",
        "nrp_core.engines.python_json.server_callbacks:EngineServer",
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


class EngineError(RuntimeError):
    """An engine failed: it raised, died, timed out or could not be launched.

    Attributes:
        engine_name: the ``EngineName``.
        op: the operation (``initialize``, ``run_loop``, ``get_datapacks``, ...).
        file: the user file of the innermost user frame ("" when unknown).
        line: its line (0 when unknown).
        error: one-line description.
        traceback: the engine-side traceback ("" when there is none).
    """

    def __init__(
        self, engine_name: str, op: str, error: str, file: str = "", line: int = 0, tb: str = ""
    ) -> None:
        self.engine_name = engine_name
        self.op = op
        self.error = error
        self.file = file
        self.line = line
        self.traceback = tb
        if file:
            text = f'Engine "{engine_name}" ({Path(file).name}:{line}): {error} (in {op})'
        else:
            text = f'Engine "{engine_name}" failed in {op}: {error}'
        if tb:
            text += "\n" + tb.rstrip()
        super().__init__(text)

    @classmethod
    def from_details(cls, engine_name: str, details: Mapping[str, Any]) -> EngineError:
        return cls(
            engine_name,
            details.get("op", "?"),
            f"{details.get('type', 'Error')}: {details.get('message', '')}",
            details.get("file", ""),
            int(details.get("line", 0) or 0),
            details.get("traceback", ""),
        )


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
            result.append(DataPackInterface(name, engine_name, entry.get("type", JSON_DATAPACK_TYPE)))
            continue
        try:
            result.append(JsonDataPack.from_json(name, engine_name, entry["data"]))
        except TypeError as exc:
            raise EngineError(
                engine_name, "get_datapacks", f"datapack '{name}' does not hold JSON data: {exc}"
            ) from exc
    return result


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
        else:
            raise TypeError(
                f"datapack '{datapack._name}' is a {type(datapack).__name__}: "
                "engines exchange JSON datapacks only"
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


class InProcessEngine(EngineHandle):
    """An engine server object in the loop's process, stepped synchronously in the loop thread."""

    def __init__(self, config: Mapping[str, Any], experiment_dir: Path) -> None:
        super().__init__(config, experiment_dir)
        self._server: Any = None
        self._get: dict[str, Any] = {}

    def start(self) -> None:
        _worker, factory = ENGINE_TYPES[self.config["EngineType"]]
        self._server = self._call("start", _load_factory(factory))

    def _call(self, op: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            raise EngineError.from_details(self.name, error_details(op, exc)) from exc

    def _fetch(self) -> list[DataPackInterface]:
        if not self._get:
            return []
        fetched = self._call("get_datapacks", self._server.get_datapacks, self._get)
        return _datapacks_from_reply(self.name, fetched)

    def initialize(self, requested: Mapping[str, str]) -> list[DataPackInterface]:
        config = self._engine_config()
        python_file = config.get("PythonFileName")
        if python_file and not Path(python_file).is_absolute():
            # No chdir in the loop's process: resolve the script against the experiment directory.
            config["PythonFileName"] = str(self.experiment_dir / python_file)
        # Engine processes run in the experiment directory; in-process servers learn it from this key
        # to resolve their other files (world, brain script, data directory).
        config.setdefault("ExperimentDirectory", str(self.experiment_dir.absolute()))
        self._call("initialize", self._server.initialize, config)
        self._get = _get_request(requested, self.name)
        self.engine_time = 0
        self._ready = self._fetch()
        return list(self._ready)

    def begin_step(self, datapacks: Iterable[DataPackInterface], time_step: int | None) -> None:
        server = self._server
        op = "set_datapacks"
        try:
            if datapacks:
                request = _set_request(datapacks, copy=True)
                if request:
                    server.set_datapacks(request)
            if time_step is not None:
                op = "run_loop"
                self.engine_time = int(server.run_loop({"time_step": time_step})["time"])
            if self._get:
                op = "get_datapacks"
                self._ready = _datapacks_from_reply(self.name, server.get_datapacks(self._get))
            else:
                self._ready = []
        except Exception as exc:
            raise EngineError.from_details(self.name, error_details(op, exc)) from exc

    def finish_step(self) -> list[DataPackInterface]:
        ready = self._ready
        self._ready = None
        return ready if ready is not None else self._fetch()

    def reset(self, datapacks: Iterable[DataPackInterface]) -> list[DataPackInterface]:
        request = _set_request(datapacks, copy=True)
        if request:
            self._call("set_datapacks", self._server.set_datapacks, request)
        self._call("reset", self._server.reset, "reset")
        self.engine_time = 0
        self._ready = self._fetch()
        return list(self._ready)

    def shutdown(self) -> None:
        if self._server is not None:
            self._call("shutdown", self._server.shutdown, None)

    def close(self) -> None:
        self._server = None


def _expand_env(value: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        return env.get(match.group(1) or match.group(2), "")

    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", replace, value)


def _apply_env_params(env: dict[str, str], params: Iterable[str]) -> dict[str, str]:
    """Apply ``VAR=VALUE`` items in order, expanding ``$OTHER`` / ``${OTHER}`` from ``env``."""
    for item in params:
        key, sep, value = str(item).partition("=")
        if sep:
            env[key] = _expand_env(value, env)
    return env


def _stop_process(proc: subprocess.Popen, name: str, grace: float = SHUTDOWN_GRACE_S) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        logger.warning("%s did not stop after SIGTERM; killing it", name)
        proc.kill()
        proc.wait()


def _close_on_exit(proc: subprocess.Popen, sock: socket.socket) -> None:
    """Shut ``sock`` down once ``proc`` exits, so that a loop waiting for its reply sees end of file.

    End of file alone is not enough: a child the engine forked (``multiprocessing``, a helper
    process) may hold the engine's end of the channel and outlive it. The process is not reaped
    here (``WNOWAIT``); :class:`subprocess.Popen` still collects its exit code.
    """
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    except ChildProcessError:  # already reaped by Popen
        pass
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)  # replies already received stay readable
    except OSError:  # closed by close() meanwhile
        pass


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


class EngineProcess(EngineHandle):
    """An engine in its own process, driven over a local control channel."""

    def __init__(
        self, config: Mapping[str, Any], experiment_dir: Path, output: int | IO[Any] | None = None
    ) -> None:
        super().__init__(config, experiment_dir)
        self._output = output
        self._proc: subprocess.Popen[bytes] | None = None
        self._channel: Channel | None = None
        self._pending = False
        self._broken = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def command(self, control_fd: int) -> list[str]:
        worker, _factory = ENGINE_TYPES[self.config["EngineType"]]
        args = [sys.executable, "-m", worker]
        for param in self.config.get("EngineProcStartParams") or []:
            args.extend(shlex.split(str(param)))
        args += [f"--engine={self.name}", f"--control-fd={control_fd}"]
        return args

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        root = _package_root()
        path = env.get("PYTHONPATH", "")
        if root not in path.split(os.pathsep):
            env["PYTHONPATH"] = root + (os.pathsep + path if path else "")
        return _apply_env_params(env, self.config.get("EngineEnvParams") or [])

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen(
                self.command(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                cwd=self.experiment_dir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=self._output,
                stderr=self._output,
            )
        except OSError as exc:
            ours.close()
            raise EngineError(self.name, "launch", f"{type(exc).__name__}: {exc}") from exc
        finally:
            theirs.close()
        self._channel = Channel(ours)
        threading.Thread(
            target=_close_on_exit, args=(self._proc, ours), name=f"engine-{self.name}-exit", daemon=True
        ).start()

    def _request(self, op: str, message: Any, timeout: float | None = None) -> Any:
        self._send(op, message)
        return self._receive(op, timeout)

    def _send(self, op: str, message: Any) -> None:
        assert self._channel is not None
        try:
            self._channel.send(message)
        except OSError as exc:
            raise self._died(op) from exc

    def _receive(self, op: str, timeout: float | None = None) -> Any:
        assert self._channel is not None
        try:
            status, payload = self._channel.recv(timeout)
        except TimeoutError:
            self._broken = True  # a reply may still come: the channel is out of step, never reuse it
            raise EngineError(self.name, op, f"no answer within EngineCommandTimeout ({timeout} s)") from None
        except EOFError as exc:
            raise self._died(op) from exc
        if status == "error":
            raise EngineError.from_details(self.name, payload)
        return payload

    def _died(self, op: str) -> EngineError:
        code = None
        if self._proc is not None:
            try:
                code = self._proc.wait(2.0)
            except subprocess.TimeoutExpired:
                code = None
        return EngineError(self.name, op, f"the engine process exited unexpectedly (exit code {code})")

    def wait_ready(self) -> None:
        assert self._channel is not None
        try:
            status, payload = self._channel.recv(READY_TIMEOUT_S)
        except TimeoutError:
            self._broken = True
            raise EngineError(self.name, "launch", "the engine process did not start in time") from None
        except EOFError as exc:
            raise self._died("launch") from exc
        if status == "error":
            raise EngineError.from_details(self.name, payload)

    def initialize(self, requested: Mapping[str, str]) -> list[DataPackInterface]:
        get = _get_request(requested, self.name)
        # EngineCommandTimeout bounds steps, not loading a script, a world or a brain.
        fetched = self._request("initialize", ("init", self._engine_config(), get))
        self.engine_time = 0
        self._ready = _datapacks_from_reply(self.name, fetched)
        return list(self._ready)

    def begin_step(self, datapacks: Iterable[DataPackInterface], time_step: int | None) -> None:
        self._send("run_loop", ("step", _set_request(datapacks, copy=False), time_step))
        self._pending = True
        self._ready = None

    def finish_step(self) -> list[DataPackInterface]:
        if not self._pending:
            ready = self._ready
            self._ready = None
            if ready is not None:
                return ready
            return _datapacks_from_reply(self.name, self._request("get_datapacks", ("get", None)))
        self._pending = False
        engine_time, fetched = self._receive("run_loop", self.command_timeout)
        if engine_time is not None:
            self.engine_time = int(engine_time)
        return _datapacks_from_reply(self.name, fetched)

    def settle(self) -> None:
        """Wait for a running step and keep its result for the next :meth:`finish_step`."""
        if self._pending:
            self._ready = self.finish_step()

    def reset(self, datapacks: Iterable[DataPackInterface]) -> list[DataPackInterface]:
        self.settle()
        fetched = self._request("reset", ("reset", _set_request(datapacks, copy=False)))
        self.engine_time = 0
        self._ready = _datapacks_from_reply(self.name, fetched)
        return list(self._ready)

    def shutdown(self) -> None:
        if self._broken or self._channel is None or self._proc is None or self._proc.poll() is not None:
            return
        self.settle()
        self._request("shutdown", ("shutdown",), SHUTDOWN_GRACE_S)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(0.1 if self._broken else 2.0)
        except subprocess.TimeoutExpired:
            _stop_process(proc, f"engine {self.name}")


class HttpEngine(EngineHandle):
    """An engine server already running elsewhere, reached over HTTP.

    Each engine operation is one JSON ``POST <ServerAddress>/<operation>``, as for nrp-core's JSON
    engines. Used for ``{"LaunchType": "EmptyLaunchCommand"}``: nothing is launched and ``ServerAddress``
    is used as is. Steps run in a helper thread so that engines still step in parallel; a step's
    reply is awaited at the engine's next synchronization, as for engine processes.
    """

    def __init__(self, config: Mapping[str, Any], experiment_dir: Path) -> None:
        super().__init__(config, experiment_dir)
        address = str(config.get("ServerAddress") or "localhost:9002")
        self.url = address if "://" in address else f"http://{address}"
        self._session: Any = None
        self._executor: Any = None
        self._future: Any = None
        self._get: dict[str, Any] = {}

    def start(self) -> None:
        import concurrent.futures

        import requests

        self._session = requests.Session()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"engine-{self.name}")

    def _post(self, route: str, body: Any) -> Any:
        import requests

        # EngineCommandTimeout bounds steps, not loading a script, a world or a brain.
        timeout = None if route in ("initialize", "reset") else self.command_timeout
        try:
            response = self._session.post(f"{self.url}/{route}", json=body, timeout=timeout)
        except requests.RequestException as exc:
            raise EngineError(self.name, route, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            try:
                details = response.json()
            except ValueError:
                details = None
            if isinstance(details, dict) and "message" in details:
                raise EngineError(
                    self.name,
                    route,
                    f"{details.get('error', 'Error')}: {details['message']}",
                    tb=str(details.get("traceback", "")),
                )
            raise EngineError(self.name, route, f"HTTP {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def _step(self, request: dict[str, Any], time_step: int | None) -> list[DataPackInterface]:
        self._post("set_datapacks", request)
        if time_step is not None:
            self.engine_time = int(self._post("run_loop", {"time_step": time_step})["time"])
        return _datapacks_from_reply(self.name, self._post("get_datapacks", self._get) if self._get else {})

    def initialize(self, requested: Mapping[str, str]) -> list[DataPackInterface]:
        self._post("initialize", self._engine_config())
        self._get = _get_request(requested, self.name)
        self.engine_time = 0
        self._ready = _datapacks_from_reply(
            self.name, self._post("get_datapacks", self._get) if self._get else {}
        )
        return list(self._ready)

    def begin_step(self, datapacks: Iterable[DataPackInterface], time_step: int | None) -> None:
        self._future = self._executor.submit(self._step, _set_request(datapacks, copy=True), time_step)
        self._ready = None

    def finish_step(self) -> list[DataPackInterface]:
        future, self._future = self._future, None
        if future is None:
            ready, self._ready = self._ready, None
            return (
                ready
                if ready is not None
                else _datapacks_from_reply(self.name, self._post("get_datapacks", self._get))
            )
        return future.result()

    def settle(self) -> None:
        if self._future is not None:
            self._ready = self.finish_step()

    def reset(self, datapacks: Iterable[DataPackInterface]) -> list[DataPackInterface]:
        self.settle()
        self._post("set_datapacks", _set_request(datapacks, copy=True))
        self._post("reset", "reset")
        self.engine_time = 0
        self._ready = _datapacks_from_reply(
            self.name, self._post("get_datapacks", self._get) if self._get else {}
        )
        return list(self._ready)

    def shutdown(self) -> None:
        if self._session is not None:
            try:
                self.settle()
            finally:
                self._post("shutdown", None)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._session is not None:
            self._session.close()
            self._session = None


class ExternalProcess:
    """A process of the config's ``ExternalProcesses`` list, started before the engines.

    Args:
        config: the entry (``ProcCmd``, ``ProcStartParams``, ``ProcEnvParams``, ``LaunchCommand``).
        experiment_dir: its working directory.
        output: where its stdout and stderr go (None: inherited).
    """

    def __init__(
        self, config: Mapping[str, Any], experiment_dir: Path, output: int | IO[Any] | None = None
    ) -> None:
        self.config = dict(config)
        self.experiment_dir = experiment_dir
        self._output = output
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        args = shlex.split(str(self.config["ProcCmd"]))
        for param in self.config.get("ProcStartParams") or []:
            args.extend(shlex.split(str(param)))
        return args

    def start(self) -> None:
        """Launch it (nothing for ``EmptyLaunchCommand``).

        Raises:
            OSError: the command cannot be started.
            ValueError: an unsupported ``LaunchCommand``.
        """
        launch = (self.config.get("LaunchCommand") or {}).get("LaunchType", "BasicFork")
        if launch == "EmptyLaunchCommand":
            return
        if launch != "BasicFork":
            raise ValueError(f"external process LaunchType '{launch}' is not supported yet")
        env = _apply_env_params(dict(os.environ), self.config.get("ProcEnvParams") or [])
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.experiment_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=self._output,
        )
        logger.info("started external process %s (pid %s)", self.config["ProcCmd"], self.proc.pid)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period (10 s)."""
        if self.proc is not None:
            _stop_process(self.proc, f"external process {self.config['ProcCmd']}")


def _names_program(proc_cmd: str, program: str) -> bool:
    """True when ``proc_cmd`` runs nrp-core's ``program`` (by any path, e.g. behind a wrapper script)."""
    try:
        words = shlex.split(proc_cmd)
    except ValueError:
        return False
    return any(Path(word).name == program for word in words)


def create_engine(
    config: Mapping[str, Any], experiment_dir: Path, output: int | IO[Any] | None = None
) -> EngineHandle:
    """The handle for one (type-defaulted) engine config.

    Args:
        config: the engine config, defaults applied (``complete_engine_config``).
        experiment_dir: working directory of engine processes; base of relative paths.
        output: where engine processes write stdout and stderr (None: inherited).

    Raises:
        EngineError: unknown ``EngineType`` or unsupported ``EngineLaunchCommand``.
    """
    name = config.get("EngineName", "?")
    engine_type = config.get("EngineType")
    if engine_type not in ENGINE_TYPES:
        raise EngineError(name, "launch", f'Failed to find engine interface "{engine_type}"')
    default_cmd = ENGINE_PROC_CMDS.get(engine_type)
    proc_cmd = config.get("EngineProcCmd")
    if default_cmd and proc_cmd and proc_cmd != default_cmd:
        if _names_program(str(proc_cmd), default_cmd):
            # nrp-core's own engine program, maybe behind its Xpra wrapper: ours serves the same engine.
            logger.info(
                "engine %s: EngineProcCmd %r runs this runtime's %s engine", name, proc_cmd, engine_type
            )
        else:
            logger.warning(
                "engine %s: custom EngineProcCmd %r is not supported yet and is ignored", name, proc_cmd
            )
    launch = (config.get("EngineLaunchCommand") or {}).get("LaunchType", "BasicFork")
    if launch == "InProcess":
        return InProcessEngine(config, experiment_dir)
    if launch == "BasicFork":
        return EngineProcess(config, experiment_dir, output)
    if launch == "EmptyLaunchCommand" and engine_type == "nest_server":
        return EngineProcess(config, experiment_dir, output)  # it connects to the running NEST Server
    if launch == "EmptyLaunchCommand":
        return HttpEngine(config, experiment_dir)
    raise EngineError(name, "launch", f"EngineLaunchCommand LaunchType '{launch}' is not supported yet")
