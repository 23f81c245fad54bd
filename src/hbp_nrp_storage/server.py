"""Run the storage server under waitress (threaded) and announce the address it bound."""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Callable
from typing import Any, cast

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server
from waitress.task import ErrorTask

from hbp_nrp_commons.settings import StorageSettings

from .app import CORS_HEADERS, create_app
from .errors import error_body

log = logging.getLogger(__name__)

THREADS = 8


class PortBusyError(RuntimeError):
    """The listen port is taken; the message names ``--port`` and ``NRP_STORAGE_PORT``."""


class JsonErrorTask(ErrorTask):
    """waitress's own error answers as our JSON error bodies, with the CORS headers.

    waitress answers some requests without calling the app: a declared ``Content-Length`` over its
    body limit (413, before the body is read), a malformed request (400), an app that failed before
    starting its response (500). Its default body is plain text; our API answers JSON everywhere.
    """

    def execute(self) -> None:
        # types-waitress declares ``request`` as an ``Error`` and ``response_headers`` as a Sequence;
        # waitress passes the request parser (which holds the error) and keeps the headers in a list.
        error = cast(HTTPRequestParser, self.request).error
        if error is None:  # waitress makes an ErrorTask only for a request with an error
            super().execute()
            return
        if error.code == 413:
            limit = self.channel.server.adj.max_request_body_size - 1
            body = error_body(413, f"Request body exceeds the limit of {limit} bytes")
        else:
            body = error_body(error.code, error.reason, str(error.body))
        payload = json.dumps(body).encode("utf-8")
        self.status = f"{error.code} {error.reason}"
        headers = cast(list[tuple[str, str]], self.response_headers)
        headers.append(("Content-Type", "application/json"))
        headers.extend(CORS_HEADERS.items())
        self.set_close_on_finish()
        self.content_length = len(payload)
        self.write(payload)


class JsonErrorChannel(HTTPChannel):
    """waitress's HTTP channel with :class:`JsonErrorTask` for the errors it answers itself."""

    error_task_class = JsonErrorTask


def make_server(settings: StorageSettings) -> MultiSocketServer | BaseWSGIServer:
    """Create (bind) the waitress server for ``settings``; port 0 picks a free port.

    The WSGI server's body limit is one byte above ours, so waitress refuses larger bodies from
    their ``Content-Length`` before reading them (with our JSON 413, :class:`JsonErrorTask`) and
    never cuts a request the app would accept.

    Raises:
        PortBusyError: the port is in use.
    """
    app = create_app(settings)
    listeners: dict[int, Any] = {}
    try:
        server = create_server(
            app,
            map=listeners,
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
    # the map holds only the listening servers yet (one per address); each makes the channel of an
    # accepted connection from its ``channel_class`` (waitress 3.0 internals: if they change, the
    # check below leaves waitress's plain-text errors in place rather than failing)
    for listener in listeners.values():
        if getattr(listener, "channel_class", None) is HTTPChannel:
            listener.channel_class = JsonErrorChannel
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
