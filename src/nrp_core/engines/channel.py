"""The local control channel between the loop and an engine process.

Messages are Python tuples pickled with protocol 5 and framed by a 4-byte little-endian length, sent
over one end of a ``socketpair``. The loop sends one request per engine per batch and reads one
reply; the engine process runs :func:`serve` and exits when the channel reaches end of file, so an
engine never outlives the process that holds the other end, even when that one is SIGKILLed.

Requests and replies (``server`` is the engine process's ``EngineServer``):

=========================================  ======================================================
request                                    reply payload (``("ok", payload)``)
=========================================  ======================================================
``("init", config, get_request)``          ``fetched``: ``get_datapacks(get_request)`` after
                                           ``initialize(config)``; ``get_request`` is remembered
``("step", set_request, time_step)``       ``(time, fetched)``: ``set_datapacks``, ``run_loop``
                                           (skipped when ``time_step`` is None, ``time`` is then
                                           None) and ``get_datapacks`` of the remembered request
``("get", get_request)``                   ``fetched``
``("reset", set_request)``                 ``fetched``: ``set_datapacks``, ``reset``, then get
``("shutdown",)``                          ``None``; the process then exits
=========================================  ======================================================

A failing operation replies ``("error", details)`` with the keys ``op``, ``type``, ``message``,
``traceback``, ``file`` and ``line`` (the innermost frame in a user file).
"""

from __future__ import annotations

import pickle
import socket
import struct
import traceback
from typing import Any

from nrp_core.errors import user_location

__all__ = ["Channel", "error_details", "serve"]

_HEADER = struct.Struct("<I")
_PROTOCOL = 5
_CHUNK = 1 << 16  # below the malloc mmap threshold: no mmap/munmap per recv


class Channel:
    """Framed pickle messages over a connected stream socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self._chunk = bytearray(_CHUNK)
        self._chunk_view = memoryview(self._chunk)

    def send(self, message: Any) -> None:
        """Send one message (blocking until the kernel has taken all of it)."""
        self.send_pickled(pickle.dumps(message, _PROTOCOL))

    def send_pickled(self, payload: bytes) -> None:
        """Send one message already pickled with :func:`pickle.dumps`."""
        header = _HEADER.pack(len(payload))
        if len(payload) < 65536:
            self.sock.sendall(header + payload)
        else:
            self.sock.sendall(header)
            self.sock.sendall(payload)

    def recv(self, timeout: float | None = None) -> Any:
        """Receive one message.

        Args:
            timeout: seconds to wait for data; None or <= 0 waits forever.

        Raises:
            EOFError: the other end closed the channel.
            TimeoutError: no complete message within ``timeout``.
        """
        buffer = self._buffer
        if timeout is not None and timeout > 0:
            self.sock.settimeout(timeout)
        try:
            while True:
                if len(buffer) >= 4:
                    (size,) = _HEADER.unpack_from(buffer)
                    end = 4 + size
                    if len(buffer) >= end:
                        message = pickle.loads(memoryview(buffer)[4:end])
                        del buffer[:end]
                        return message
                try:
                    received = self.sock.recv_into(self._chunk_view)
                except (ConnectionResetError, BrokenPipeError) as exc:
                    raise EOFError(str(exc)) from exc
                if not received:
                    raise EOFError("control channel closed")
                buffer += self._chunk_view[:received]
        except TimeoutError:
            raise
        finally:
            if timeout is not None and timeout > 0:
                self.sock.settimeout(None)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _is_brief(exc: BaseException) -> bool:
    return bool(getattr(exc, "brief", False) or getattr(exc.__cause__, "brief", False))


def error_details(op: str, exc: BaseException) -> dict[str, Any]:
    """Describe an exception for an ``("error", details)`` reply."""
    file, line = user_location(exc)
    return {
        "op": op,
        "type": type(exc).__name__,
        "message": str(exc),
        # Errors whose message says it all (``brief``, e.g. a world file that does not load) have none.
        "traceback": "" if _is_brief(exc) else "".join(traceback.format_exception(exc)),
        "file": file,
        "line": line,
    }


def serve(channel: Channel, server: Any) -> None:
    """Answer requests from ``channel`` with ``server`` until end of file or ``shutdown``."""
    get_request: dict[str, Any] | None = None
    reply: Any
    while True:
        try:
            message = channel.recv()
        except EOFError:
            return
        op = message[0]
        phase = op
        try:
            if op == "step" and hasattr(server, "step"):
                # a server that sets, advances and reads in one go (nest_server: one request to NEST Server)
                phase = "run_loop"
                reply = server.step(message[1], message[2], get_request)
            elif op == "step":
                set_request, time_step = message[1], message[2]
                phase = "set_datapacks"
                if set_request:
                    server.set_datapacks(set_request)
                time = None
                if time_step is not None:
                    phase = "run_loop"
                    time = server.run_loop({"time_step": time_step})["time"]
                phase = "get_datapacks"
                fetched = server.get_datapacks(get_request) if get_request else {}
                reply = (time, fetched)
            elif op == "init":
                phase = "initialize"
                server.initialize(message[1])
                get_request = message[2]
                phase = "get_datapacks"
                reply = server.get_datapacks(get_request) if get_request else {}
            elif op == "get":
                phase = "get_datapacks"
                request = message[1] if message[1] is not None else get_request
                reply = server.get_datapacks(request) if request else {}
            elif op == "reset":
                phase = "set_datapacks"
                if message[1]:
                    server.set_datapacks(message[1])
                phase = "reset"
                server.reset("reset")
                phase = "get_datapacks"
                reply = server.get_datapacks(get_request) if get_request else {}
            elif op == "shutdown":
                server.shutdown(None)
                channel.send(("ok", None))
                return
            else:
                raise ValueError(f"unknown engine request {op!r}")
        except Exception as exc:
            channel.send(("error", error_details(phase, exc)))
            continue
        try:
            payload = pickle.dumps(("ok", reply), _PROTOCOL)
        except Exception as exc:  # e.g. an engine stored an object that cannot leave the process
            channel.send(("error", error_details(f"{phase} (reply)", exc)))
            continue
        channel.send_pickled(payload)


def line_buffered_output() -> None:
    """Write whole lines: several engines share one output file or pipe, even with ``python -u``.

    ``print("a", x)`` issues several writes; unbuffered streams (``PYTHONUNBUFFERED``) would pass
    them on one by one and lines of different engines would interleave mid-line.
    """
    import io
    import sys

    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        if old is None:
            continue
        try:
            old.flush()
        except (OSError, ValueError):
            continue
        raw = io.FileIO(fd, "w", closefd=False)
        stream = io.TextIOWrapper(
            io.BufferedWriter(raw), encoding=old.encoding, errors=old.errors, line_buffering=True
        )
        setattr(sys, name, stream)


def worker_main(make_server: Any, argv: list[str] | None = None) -> int:
    """Entry point of an engine process: ``--engine=<name> --control-fd=<n>`` (other args ignored).

    Sends ``("ready", pid)`` once ``make_server()`` has built the engine server, then serves
    requests until end of file. SIGINT is ignored, so a Ctrl-C in a terminal reaches the runtime,
    which shuts the engines down in order; a watchdog thread exits the process if its parent dies
    while the engine is busy in a long step (end of file covers the idle case).
    """
    import argparse
    import os
    import signal
    import sys
    import threading
    import time

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--engine", required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    args, _unknown = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    line_buffered_output()
    parent = os.getppid()

    def watch_parent() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch_parent, name="parent-watchdog", daemon=True).start()
    # Not passed on to processes the engine script starts: they must not keep the channel open.
    os.set_inheritable(args.control_fd, False)
    sock = socket.socket(fileno=args.control_fd)
    channel = Channel(sock)
    try:
        server = make_server()
    except Exception as exc:
        channel.send(("error", error_details("start", exc)))
        return 1
    channel.send(("ready", os.getpid()))
    try:
        serve(channel, server)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0
