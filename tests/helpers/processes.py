"""Start real server processes for tests and find the port they bound.

Every NRP server prints ``Listening on http://<host>:<port>`` once it accepts requests; tests start
servers on port 0 and read that line instead of racing for free ports.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LISTENING = re.compile(r"Listening on (?P<url>\S+://(?P<host>[^:/\s]+):(?P<port>\d+))")


@dataclass
class ServerProcess:
    """A running server subprocess with its output collected in the background."""

    proc: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    def text(self) -> str:
        return "".join(self.output)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Terminate (SIGTERM, then SIGKILL after ``timeout``) and return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def start_server(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 30.0,
) -> ServerProcess:
    """Run ``python -m <args>``-style command ``args`` and wait for its ``Listening on`` line.

    Args:
        args: the full command line (use ``sys.executable`` as the first element).
        env: extra environment variables on top of the current environment.
        cwd: working directory of the process.
        timeout: seconds to wait for the line.

    Raises:
        RuntimeError: the process exited or did not print the line in time; the message holds its output.
    """
    full_env = dict(os.environ)
    full_env["PYTHONUNBUFFERED"] = "1"
    if env:
        full_env.update(env)
    proc = subprocess.Popen(
        list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
        cwd=cwd,
    )
    output: list[str] = []
    found = threading.Event()
    url_holder: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            match = LISTENING.search(line)
            if match and not found.is_set():
                url_holder.append(match.group("url"))
                found.set()
        found.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not found.wait(0.05):
        pass
    if not url_holder:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        raise RuntimeError(f"server {args!r} did not start:\n{''.join(output)}")
    return ServerProcess(proc=proc, url=url_holder[0], output=output)


def free_port() -> int:
    """A port that was free a moment ago (only for programs that cannot bind port 0 themselves)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def python() -> str:
    return sys.executable
