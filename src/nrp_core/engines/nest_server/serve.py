"""Run NEST Server for one ``nest_server`` engine: ``python -m nrp_core.engines.nest_server.serve``.

NEST's own Flask application (``nest.server``) served in the main thread (NEST crashes when called
from a server's worker thread), on ``--host`` and ``--port`` (0: a free port). It prints ``Listening on
http://<host>:<port>`` once it accepts requests. ``/exec`` is enabled without RestrictedPython, as
nrp-core runs it (brain scripts are arbitrary Python), so requests must carry the access token given
in ``NRP_NEST_SERVER_TOKEN``. The server exits when its standard input closes (its engine is gone).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"

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

    token = os.environ.pop("NRP_NEST_SERVER_TOKEN", "")
    if not token:
        print("NRP_NEST_SERVER_TOKEN is not set: refusing to serve /exec without an access token", flush=True)
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
    from nest.server import app

    # NEST must run in the main thread (it crashes in a server's worker thread): a single-threaded
    # WSGI server, keeping connections alive (HTTP/1.1) as the engine sends one request per step.
    server = make_server(args.host, args.port, app, handler_class=_QuietHandler)
    host, port = server.socket.getsockname()[:2]
    print(f"Listening on http://{host}:{port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
