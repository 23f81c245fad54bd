"""Run NEST Server for one ``nest_server`` engine: ``python -m nrp_core.engines.nest_server.serve``.

NEST's own Flask application (``nest.server``) served in the main thread (NEST crashes when called
from a server's worker thread), on ``--host`` and ``--port`` (0: a free port). It prints ``Listening on
http://<host>:<port>`` once it accepts requests. ``/exec`` is enabled without RestrictedPython, as
nrp-core runs it (brain scripts are arbitrary Python), so requests must carry the access token, which
the engine writes as the first line of the server's standard input. The server exits when its
standard input closes (its engine is gone).
"""

from __future__ import annotations

import argparse
import hmac
import os
import socket
import sys
import threading
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, make_server


class _KeepAliveHandler(ServerHandler):
    http_version = "1.1"  # wsgiref answers HTTP/1.0 by default, which closes every connection


class _QuietHandler(WSGIRequestHandler):
    """Keeps the connection open for the next request (HTTP/1.1), silently."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small replies, no delay

    def handle(self) -> None:
        while True:  # one request at a time until the client closes or asks to
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline or len(self.raw_requestline) > 65536 or not self.parse_request():
                return
            handler = _KeepAliveHandler(
                self.rfile,
                self.wfile,  # type: ignore[arg-type]
                self.get_stderr(),
                self.get_environ(),
                multithread=False,
            )
            handler.request_handler = self  # type: ignore[attr-defined]
            handler.run(self.server.get_app())  # type: ignore[attr-defined]
            if self.close_connection:
                return

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # no line per request


def _exit_with_parent() -> None:
    sys.stdin.read()  # returns at end of file: the engine process closed the pipe or died
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    token = sys.stdin.readline().strip()  # the first line of standard input, never the environment
    if not token:
        print("no access token on standard input: refusing to serve /exec without one", flush=True)
        return 2
    os.environ.update(
        {
            "NEST_SERVER_ACCESS_TOKEN": token,
            "NEST_SERVER_ENABLE_EXEC_CALL": "1",
            "NEST_SERVER_DISABLE_RESTRICTION": "1",
            "NEST_SERVER_MODULES": "import nest",
            "PYNEST_QUIET": "1",
        }
    )
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    from flask import request
    from nest.server import app

    # NEST Server's own access check walks the garbage collector's referrers on every request (some
    # milliseconds with NEST loaded); this server checks the same header against its token directly.
    def check_token() -> Any:
        if not hmac.compare_digest(request.headers.get("NESTServerAuth", ""), token):
            return ("Unauthorized", 403)
        return None

    app.before_request_funcs[None] = [check_token]

    # NEST must run in the main thread (it crashes in a server's worker thread): a single-threaded
    # WSGI server, keeping connections alive (HTTP/1.1) as the engine sends one request per step.
    server = make_server(args.host, args.port, app, handler_class=_QuietHandler)
    host, port = server.socket.getsockname()[:2]
    print(f"Listening on http://{host}:{port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
