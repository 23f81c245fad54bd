"""Start server processes and wait until they accept requests.

Every NRP server prints ``Listening on <scheme>://<host>:<port>`` once it accepts connections; port 0
means "pick a free port". :func:`start_service` starts such a process, collects its output in the
background and returns once that line has appeared, with the URL it printed. ``nrp up`` uses it to
chain the broker, the storage server and the REST server; tests use it to start real servers.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1
LISTENING = re.compile(r"Listening on (?P<url>\S+://(?P<host>[^:/\s]+):(?P<port>\d+))")


class ServiceStartError(RuntimeError):
    """The process exited or did not announce itself in time; ``output`` holds what it printed."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(f"{message}\n{output}" if output else message)
        self.output = output


@dataclass
class ServiceProcess:
    """A running server subprocess with its output collected in the background."""

    proc: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    def text(self) -> str:
        """Everything the process printed so far."""
        return "".join(self.output)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Send SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def _terminate_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent goes away."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def start_service(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 30.0,
    on_line: Callable[[str], None] | None = None,
    die_with_parent: bool = False,
    new_session: bool = False,
) -> ServiceProcess:
    """Run ``args`` and wait for its ``Listening on`` line.

    Args:
        args: the full command line.
        env: environment variables added to the current one.
        cwd: working directory of the process.
        timeout: seconds to wait for the line.
        on_line: called with every line the process prints (from a background thread).
        die_with_parent: on Linux, the child gets SIGTERM when the thread that started it ends (also when
            the parent is killed with SIGKILL); start such services from a thread that lives as long
            as they should, such as the main thread.
        new_session: start it in a session (and process group) of its own, so that a terminal's
            Ctrl-C, sent to the foreground process group, reaches only the parent.

    Returns:
        the running process and the URL it announced.

    Raises:
        ServiceStartError: the process exited or stayed silent for ``timeout`` seconds (it is then killed).
    """
    full_env = dict(os.environ)
    full_env["PYTHONUNBUFFERED"] = "1"
    if env:
        full_env.update(env)
    proc = subprocess.Popen(
        list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=full_env,
        cwd=cwd,
        preexec_fn=_terminate_with_parent if die_with_parent else None,
        start_new_session=new_session,
    )
    output: list[str] = []
    announced = threading.Event()
    urls: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if on_line is not None:
                on_line(line)
            if not urls:
                match = LISTENING.search(line)
                if match:
                    urls.append(match.group("url"))
                    announced.set()
        announced.set()

    threading.Thread(target=pump, name=f"output-{proc.pid}", daemon=True).start()
    deadline = time.monotonic() + timeout
    while not announced.wait(0.05) and time.monotonic() < deadline:
        pass
    if not urls:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        what = f"exited with code {proc.returncode}" if proc.returncode is not None else "did not start"
        raise ServiceStartError(f"{' '.join(args)} {what}", "".join(output))
    return ServiceProcess(proc=proc, url=urls[0], output=output)
