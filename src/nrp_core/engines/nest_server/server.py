"""The ``nest_server`` engine server: the six engine operations, each one request to NEST Server.

At initialize it starts NEST Server (:mod:`nrp_core.engines.nest_server.serve`) on ``NestServerHost``
and ``NestServerPort`` (a free port when absent), or, with ``EmptyLaunchCommand``, connects to the one
running there (it must have ``/exec`` enabled without RestrictedPython, as nrp-core requires, and be
able to import ``nrp_core``; its access token is read from ``NEST_SERVER_ACCESS_TOKEN`` in the engine's
environment). The brain script's text is sent along, so the server need not see the experiment's
files. A step is one ``/exec`` request: set datapacks, simulate, read datapacks.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from nrp_core.engines import experiment_path
from nrp_core.engines.nest_json.server import NestEngineError

__all__ = ["NestServerEngine", "make_server"]

START_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0
_RUNTIME = "nrp_core.engines.nest_server.runtime"


def _forward(stream: IO[str], lines: queue.Queue[str | None], token: str) -> None:
    """Pass NEST Server's output to ours; the lines up to ``Listening on`` also go to ``lines``."""
    listening = False
    for line in stream:
        if token and token in line:
            continue  # NEST Server prints its access token; keep it out of the logs
        if not listening:
            lines.put(line)
            listening = line.startswith("Listening on ")
        if not listening or not line.startswith("Listening on "):
            sys.stdout.write(line)
            sys.stdout.flush()
    lines.put(None)


class NestServerEngine:
    """Engine server for ``nest_server``: the ``nest_json`` operations, run inside NEST Server."""

    def __init__(self) -> None:
        self._name = "nest"
        self._process: subprocess.Popen[str] | None = None
        self._connection: http.client.HTTPConnection | None = None
        self._headers: dict[str, str] = {"Content-Type": "application/json"}
        self._get_request: dict[str, Any] | None = None
        self._initialized = False

    def _where(self) -> str:
        return f"nest_server engine '{self._name}'"

    # -- NEST Server ---------------------------------------------------------------------------------

    def _start(self, host: str, port: int) -> tuple[str, int]:
        token = secrets.token_hex(24)
        env = dict(os.environ, PYNEST_QUIET="1")
        command = [
            sys.executable,
            "-m",
            "nrp_core.engines.nest_server.serve",
            "--host",
            host,
            "--port",
            str(port),
        ]
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,  # closed when we exit: the server exits with us
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
        except OSError as exc:
            raise NestEngineError(f"{self._where()}: cannot start NEST Server: {exc}") from exc
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(
            token + "\n"
        )  # the token: first line of its input, kept out of argv and env
        self._process.stdin.flush()
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(
            target=_forward, args=(self._process.stdout, lines, token), name="nest-server-output", daemon=True
        ).start()
        output: list[str] = []
        while True:
            try:
                line = lines.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                self._stop()
                raise NestEngineError(
                    f"{self._where()}: NEST Server did not start within {START_TIMEOUT_S:.0f} s"
                ) from None
            if line is None:
                code = self._process.wait()
                self._process = None
                raise NestEngineError(
                    f"{self._where()}: NEST Server exited (code {code}) before listening:\n"
                    + "".join(output[-20:])
                )
            output.append(line)
            if line.startswith("Listening on "):
                address = line.split("://", 1)[1].strip()
                bound_host, _, bound_port = address.rpartition(":")
                self._headers["NESTServerAuth"] = token
                return bound_host, int(bound_port)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        process.terminate()
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _call(self, op: str, payload: Any) -> Any:
        """One engine operation in NEST Server (one ``/exec`` request); its JSON result."""
        if self._connection is None:
            raise NestEngineError(f"{self._where()}: not initialized")
        source = f"result = __import__({_RUNTIME!r}, fromlist=['call']).call({op!r}, {json.dumps(payload)!r})"
        body = json.dumps({"source": source, "return": "result"})
        try:
            self._connection.request("POST", "/exec", body, self._headers)
            response = self._connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            self._connection.close()
            raise NestEngineError(f"{self._where()}: NEST Server unreachable ({op}): {exc}") from exc
        if response.status != 200:
            try:
                message = json.loads(text).get("message", text)
            except (ValueError, AttributeError):
                message = text
            if response.status == 403:
                message = f"forbidden ({text.strip()[:200]}): is /exec enabled and the access token right?"
            raise NestEngineError(f"{self._where()}: {op} failed in NEST Server: {message}")
        reply = json.loads(text)
        stdout = reply.get("stdout")
        if stdout:
            print(stdout, flush=True)
        return json.loads(reply["data"])

    # -- engine operations ---------------------------------------------------------------------------

    def initialize(self, request: dict[str, Any]) -> None:
        """Start or reach NEST Server and run the brain script (``NestInitFileName``) in it."""
        self._name = str(request.get("EngineName", "nest"))
        if int(request.get("MPIProcs", 1) or 1) > 1:
            raise NestEngineError(f"{self._where()}: MPIProcs > 1 (NEST Server under MPI) is not supported")
        brain = str(request.get("NestInitFileName", ""))
        if not brain:
            raise NestEngineError(f"{self._where()}: NestInitFileName is required")
        path = experiment_path(request, brain)
        if not path.is_file():
            raise NestEngineError(
                f"{self._where()}: brain script (NestInitFileName) '{brain}' not found ({path})"
            )
        host = str(request.get("NestServerHost") or "localhost")
        port = request.get("NestServerPort")
        launch = (request.get("EngineLaunchCommand") or {}).get("LaunchType", "BasicFork")
        if launch == "EmptyLaunchCommand":
            if not port:
                raise NestEngineError(
                    f"{self._where()}: EmptyLaunchCommand needs NestServerPort (a running server)"
                )
            token = os.environ.get("NEST_SERVER_ACCESS_TOKEN", "")
            if token:
                self._headers["NESTServerAuth"] = token
        else:
            host, port = self._start("127.0.0.1" if host == "localhost" else host, int(port or 0))
        self._connection = http.client.HTTPConnection(host, int(port), timeout=None)
        config = dict(request)
        config.setdefault("ExperimentDirectory", str(Path.cwd()))
        config["ExperimentDirectory"] = str(Path(config["ExperimentDirectory"]).absolute())
        self._call("initialize", {"config": config, "source": path.read_text()})
        self._initialized = True

    def run_loop(self, request: dict[str, Any]) -> dict[str, int]:
        result = self._call("step", {"set": None, "time_step": int(request["time_step"]), "get": None})
        return {"time": int(result["time"])}

    def step(self, set_request: dict[str, Any] | None, time_step: int | None, get_request: Any) -> tuple:
        """Set, advance and read in one request (used by the engine process's step message)."""
        result = self._call("step", {"set": set_request, "time_step": time_step, "get": get_request})
        return result["time"], result["datapacks"]

    def set_datapacks(self, request: dict[str, Any] | None) -> None:
        if request:
            self._call("step", {"set": request, "time_step": None, "get": None})

    def get_datapacks(self, request: dict[str, Any] | None) -> dict[str, Any]:
        if not request:
            return {}
        return self._call("get", request)

    def reset(self, request: Any = None) -> None:
        self._call("reset", None)

    def shutdown(self, request: Any = None) -> None:
        try:
            if self._initialized and self._connection is not None:
                self._call("shutdown", None)
        finally:
            self._initialized = False
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            self._stop()


def make_server() -> NestServerEngine:
    """A fresh :class:`NestServerEngine` (the ``nest_server`` server factory)."""
    return NestServerEngine()
