"""Counting wrappers for ``bench_scale``: the storage and REST servers with a tally of their work.

Neither server logs its requests or its SQLite statements, so ``bench_scale`` starts them through
``python -c "from benchmarks.scale_counters import run; run()" <nrp arguments>``: :func:`run` appends
one line per event to the file named by ``NRP_BENCH_COUNT_FILE`` and then runs the ``nrp`` command
unchanged. Events:

- ``<time> http <method> <route> <status> <bytes in> <bytes out>``: one per request the WSGI app of
  the storage server answered (a middleware around ``hbp_nrp_storage.app.create_app``'s app);
- ``<time> sql <database> <verb> <table>``: one per SQLite statement that writes (``INSERT``,
  ``UPDATE``, ``DELETE``, ``REPLACE``), from a trace callback on every connection the process opens.

Writes go through one lock and are flushed line by line, so the benchmark can read the file at any
time. The overhead is a formatted line per request or write statement.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE")
KNOWN_SEGMENTS = frozenset(
    {"storage", "identity", "experiments", "archive", "me", "clone", "zip", "health", "proxy"}
)
_TABLE = re.compile(r"\b(?:INTO|UPDATE|FROM)\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


class EventLog:
    """Appends timestamped lines to one file, thread-safe."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._out: IO[str] = path.open("a", encoding="utf-8")

    def write(self, *fields: object) -> None:
        line = " ".join(str(f) for f in (f"{time.time():.6f}", *fields))
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


def route_of(path: str) -> str:
    """``path`` with names of experiments, files and users replaced by ``<x>``.

    ``/storage/bench_forever/20261205T1_simulation_3.log.zip`` -> ``/storage/<x>/<x>``; a leading
    ``/proxy`` is kept, so the public API and the backend's calls stay apart.
    """
    path = path.split("?", 1)[0]
    segments = [s for s in path.split("/") if s]
    return "/" + "/".join(s if s in KNOWN_SEGMENTS else "<x>" for s in segments)


class _CountedBody:
    """Iterates a WSGI body, counts its bytes and reports them once the server closes it."""

    def __init__(self, body: Iterable[bytes], done: Callable[[int], None]) -> None:
        self._body = body
        self._done = done
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done(self._sent)


def counting_middleware(app: Any, log: EventLog) -> Callable[..., Any]:
    """Wrap the WSGI ``app``: one ``http`` line per answered request."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        status: list[str] = []

        def start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(code.split(" ", 1)[0])
            return start_response(code, headers, exc_info)

        method = environ.get("REQUEST_METHOD", "?")
        route = route_of(environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"))
        received = environ.get("CONTENT_LENGTH") or "0"
        body = app(environ, start)
        return _CountedBody(
            body, lambda sent: log.write("http", method, route, status[-1] if status else "-", received, sent)
        )

    return wrapped


def trace_writes(log: EventLog) -> None:
    """Make every ``sqlite3.connect`` of this process report its write statements."""
    original = sqlite3.connect

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = original(database, *args, **kwargs)
        name = Path(str(database).split("?", 1)[0]).name

        def trace(statement: str) -> None:
            verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
            if verb in WRITE_VERBS:
                table = _TABLE.search(statement)
                log.write("sql", name, verb, table.group(1) if table else "?")

        connection.set_trace_callback(trace)
        return connection

    sqlite3.connect = connect  # type: ignore[assignment]


def run() -> None:
    """Install the counters, then run ``nrp`` with this process's arguments."""
    log = EventLog(Path(os.environ["NRP_BENCH_COUNT_FILE"]))
    trace_writes(log)
    if sys.argv[1:2] == ["storage"]:
        import hbp_nrp_storage.server as storage_server

        create_app = storage_server.create_app

        def counted_app(settings: Any) -> Any:
            return counting_middleware(create_app(settings), log)

        storage_server.create_app = counted_app
    from nrp_cli.main import cli

    cli()
