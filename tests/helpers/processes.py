"""Start real server processes for tests and find the port they bound.

Thin test-side names over :mod:`hbp_nrp_commons.service_process`: servers are started on port 0 and
the test reads their ``Listening on`` line instead of racing for free ports.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from hbp_nrp_commons.service_process import LISTENING, ServiceProcess, ServiceStartError, start_service

ServerProcess = ServiceProcess

__all__ = ["LISTENING", "ServerProcess", "free_port", "python", "start_server"]


def start_server(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 30.0,
) -> ServiceProcess:
    """Run ``args`` and wait for its ``Listening on`` line.

    Raises:
        RuntimeError: the process exited or did not print the line in time; the message holds its output.
    """
    try:
        return start_service(args, env=env, cwd=cwd, timeout=timeout)
    except ServiceStartError as exc:
        raise RuntimeError(str(exc)) from exc


def free_port() -> int:
    """A port that was free a moment ago (only for programs that cannot bind port 0 themselves)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def python() -> str:
    return sys.executable
