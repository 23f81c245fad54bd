"""Run the REST server under waitress until SIGTERM or SIGINT, then stop every simulation.

The listening socket is bound before anything else, so a busy port fails at once; the server
announces ``Listening on http://<host>:<port>`` only once it accepts connections.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from hbp_nrp_backend.config import BackendConfig
from hbp_nrp_commons.http_edge import HttpLimits, install_edge
from hbp_nrp_commons.log_setup import configure_root_logging

logger = logging.getLogger(__name__)


class PortBusyError(OSError):
    """The listen port is taken by another program."""


def configure_logging(verbose: bool = False, logfile: Path | None = None) -> None:
    """Root logger to stdout (or ``logfile``), INFO or DEBUG; repeated calls add no handlers."""
    configure_root_logging(verbose, logfile, quiet=("transitions", "waitress.queue"))


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on ``host:port`` (port 0: a free port).

    Raises:
        PortBusyError: the port is in use.
        OSError: any other bind failure (unknown host...).
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortBusyError(exc.errno, f"port {port} is already in use") from exc
        raise
    sock.listen(1024)
    return sock


def serve(
    config: BackendConfig,
    host: str,
    port: int,
    announce: Callable[[str], None] | None = None,
) -> int:
    """Serve the REST API until SIGTERM or SIGINT; then stop every simulation and return 0.

    Args:
        config: the backend configuration.
        host: listen address.
        port: listen port; 0 picks a free one.
        announce: called with ``http://<host>:<port>`` once connections are accepted.

    Raises:
        PortBusyError: the port is in use.
    """
    from waitress.server import create_server

    from hbp_nrp_backend.api.common import EXTENSION
    from hbp_nrp_backend.app import create_app
    from hbp_nrp_backend.errors import CORS_ERROR_HEADERS

    sock = bind_socket(host, port)
    actual_port = sock.getsockname()[1]
    app = create_app(config)
    manager = app.extensions[EXTENSION]
    http = config.settings.http
    limits = HttpLimits(
        max_body_bytes=config.max_body_bytes,
        max_connections=http.max_connections,
        idle_timeout=http.idle_timeout,
        header_timeout=http.header_timeout,
    )
    listeners: dict[int, Any] = {}
    server = create_server(
        app,
        map=listeners,
        sockets=[sock],
        threads=config.threads,
        ident="nrp-backend",
        **limits.waitress_options(),
    )
    install_edge(server, listeners, limits, CORS_ERROR_HEADERS)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("Received signal %s; shutting down", signal.Signals(signum).name)
        if not stopping.is_set():
            stopping.set()
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{actual_port}"
    logger.info("REST server on %s with %d threads", url, config.threads)
    if not config.sandbox.enabled:
        logger.warning("Simulation Servers run unsandboxed, as this server's user (NRP_SANDBOX=none)")
    if announce is not None:
        announce(url)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        stopping.set()
        try:
            server.close()
        except Exception:
            logger.debug("Closing the WSGI server failed", exc_info=True)
        logger.info("Stopping every active simulation")
        manager.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("REST server stopped")
    return 0
