"""Run the storage server under waitress (threaded) and announce the address it bound."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Any

from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

from hbp_nrp_commons.http_edge import HttpLimits, install_edge
from hbp_nrp_commons.settings import StorageSettings

from .app import CORS_HEADERS, create_app

log = logging.getLogger(__name__)

THREADS = 8


class PortBusyError(RuntimeError):
    """The listen port is taken; the message names ``--port`` and ``NRP_STORAGE_PORT``."""


def make_server(settings: StorageSettings) -> MultiSocketServer | BaseWSGIServer:
    """Create (bind) the waitress server for ``settings``; port 0 picks a free port.

    The HTTP edge (``hbp_nrp_commons.http_edge``) bounds bodies, connections and timeouts before
    any request reaches the app; waitress's own errors are JSON with the CORS headers.

    Raises:
        PortBusyError: the port is in use.
    """
    app = create_app(settings)
    limits = HttpLimits(
        max_body_bytes=settings.max_upload_bytes,
        max_connections=settings.http.max_connections,
        idle_timeout=settings.http.idle_timeout,
        header_timeout=settings.http.header_timeout,
    )
    listeners: dict[int, Any] = {}
    try:
        server = create_server(
            app,
            map=listeners,
            host=settings.host,
            port=settings.port,
            threads=THREADS,
            ident="nrp-storage",
            **limits.waitress_options(),
        )
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            raise PortBusyError(
                f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
                "choose another port with --port or NRP_STORAGE_PORT"
            ) from exc
        raise
    install_edge(server, listeners, limits, CORS_HEADERS)
    return server


def _bound_port(server: MultiSocketServer | BaseWSGIServer) -> int:
    """The port ``server`` listens on (the first one when a host name resolved to several addresses)."""
    if isinstance(server, BaseWSGIServer):
        # waitress sets effective_port in __init__; types-waitress does not declare it
        return server.effective_port  # type: ignore[attr-defined]
    return server.effective_listen[0][1]


def serve(settings: StorageSettings, announce: Callable[[str], None]) -> None:
    """Serve until interrupted.

    Args:
        settings: storage settings (root, address, limits).
        announce: called once with ``Listening on http://<host>:<port>`` when connections are accepted.

    Raises:
        PortBusyError: the port is in use.
    """
    server = make_server(settings)
    host = settings.host
    port = _bound_port(server)
    log.info("storage root %s", settings.root)
    announce(f"Listening on http://{host}:{port}")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
