"""Run the storage server under waitress (threaded) and announce the address it bound."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

from waitress.server import create_server

from hbp_nrp_commons.settings import StorageSettings

from .app import create_app

log = logging.getLogger(__name__)

THREADS = 8


class PortBusyError(RuntimeError):
    """The listen port is taken; the message names ``--port`` and ``NRP_STORAGE_PORT``."""


def make_server(settings: StorageSettings):  # noqa: ANN201 - waitress has no public server type
    """Create (bind) the waitress server for ``settings``; port 0 picks a free port.

    The WSGI server's body limit is one byte above ours, so waitress refuses larger bodies from
    their ``Content-Length`` before reading them and never cuts a request the app would accept.

    Raises:
        PortBusyError: the port is in use.
    """
    app = create_app(settings)
    try:
        return create_server(
            app,
            host=settings.host,
            port=settings.port,
            threads=THREADS,
            max_request_body_size=settings.max_upload_bytes + 1,
            ident="nrp-storage",
            clear_untrusted_proxy_headers=True,
        )
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            raise PortBusyError(
                f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
                "choose another port with --port or NRP_STORAGE_PORT"
            ) from exc
        raise


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
    port = server.effective_port  # type: ignore[union-attr]
    log.info("storage root %s", settings.root)
    announce(f"Listening on http://{host}:{port}")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
