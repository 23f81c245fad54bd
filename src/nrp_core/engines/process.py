"""Engines in their own process (``BasicFork``, the default) and the config's ``ExternalProcesses``.

:class:`EngineProcess` runs ``<python> -m nrp_core.engines.<type>.worker <EngineProcStartParams...>
--engine=<name> --control-fd=<n>`` in the experiment directory with ``EngineEnvParams`` applied,
and talks to it over a :class:`~nrp_core.engines.channel.Channel` on a ``socketpair``: one round
trip per batch carries the datapacks to set and the step, and brings back the engine time and the
requested datapacks after the step.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from nrp_core.datapacks import DataPackInterface
from nrp_core.engines.channel import Channel
from nrp_core.engines.handle import (
    ENGINE_TYPES,
    EngineError,
    EngineHandle,
    _datapacks_from_reply,
    _get_request,
    _set_request,
)

__all__ = ["READY_TIMEOUT_S", "SHUTDOWN_GRACE_S", "EngineProcess", "ExternalProcess"]

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0
READY_TIMEOUT_S = 60.0


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
        # Our own console scripts (async_python_json_engine.py, ...) live beside this interpreter,
        # which need not be on PATH (e.g. `.venv/bin/nrp up` without an activated environment).
        if args and os.sep not in args[0] and shutil.which(args[0]) is None:
            sibling = Path(sys.executable).parent / args[0]
            if sibling.is_file():
                args[0] = str(sibling)
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
