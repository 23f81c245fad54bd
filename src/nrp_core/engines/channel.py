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

Waiting: a receiver first polls its socket for up to ``NRP_ENGINE_SPIN_US`` microseconds (default
300; 0 never polls), yielding the CPU between polls, and only then blocks (see :class:`SpinPolicy`):
on virtual machines whose idle CPUs halt, waking a blocked process costs tens of microseconds, more
than a whole step of a light engine.
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import time
import traceback
from typing import Any

from nrp_core.errors import user_location

__all__ = ["SPIN_ENV", "Channel", "SpinPolicy", "error_details", "serve"]

_HEADER = struct.Struct("<I")
_PROTOCOL = 5
_CHUNK = 1 << 16  # below the malloc mmap threshold: no mmap/munmap per recv

SPIN_ENV = "NRP_ENGINE_SPIN_US"
"""Environment variable: microseconds a receiver polls before blocking (default 300, 0: never)."""


class SpinPolicy:
    """When a receiver polls its socket before blocking; one per process, shared by its channels.

    A receive first polls (non-blocking ``recv``) for up to ``window`` seconds, calling
    ``sched_yield`` between polls so that a process runnable on the same CPU (often the peer) runs
    first; a reply that comes within the window is taken without the cost of a wake-up. Polling
    fails when the window passes (the peer is busy with a long step) or when one poll came more than
    ``gap`` seconds after the previous one: another process ran on this CPU meanwhile, so the CPU is
    contended and polling would only take time from others (a yield may hand a CPU-bound stranger a
    whole time slice). After a failure the process blocks without polling for ``backoff`` seconds,
    which doubles with each failure up to ``max_backoff``; ``streak`` polls in a row that yielded and
    then got their data without contention reset it to ``min_backoff``.

    Args:
        window: seconds to poll before blocking; <= 0 never polls.
        gap: longest pause between two polls that does not count as contention (seconds).
        min_backoff: first pause of polling after a failure (seconds).
        max_backoff: longest pause (seconds).
        streak: successful polls in a row that reset the pause to ``min_backoff``.
    """

    def __init__(
        self,
        window: float,
        gap: float = 1e-3,
        min_backoff: float = 1e-3,
        max_backoff: float = 1.0,
        streak: int = 64,
    ) -> None:
        self.window = window
        self.gap = gap
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.streak = streak
        self.backoff = min_backoff
        self.off_until = 0.0
        self._successes = 0

    @classmethod
    def shared(cls) -> SpinPolicy:
        """This process's policy for the current ``NRP_ENGINE_SPIN_US`` (default 300 us; unparsable
        or negative: 0), read at each call; channels created under the same value share it."""
        try:
            micros = float(os.environ.get(SPIN_ENV, "300"))
        except ValueError:
            micros = 0.0
        window = max(micros, 0.0) * 1e-6
        policy = _POLICIES.get(window)
        if policy is None:
            policy = _POLICIES[window] = cls(window)
        return policy

    def poll(self, sock: socket.socket, buffer: memoryview, limit: float | None = None) -> int | None:
        """Poll ``sock`` into ``buffer``; the byte count received (0: end of file), or None: block.

        Args:
            limit: at most this many seconds (the caller's timeout), if given.

        Raises:
            OSError: from ``recv`` (a connection reset, ...).
        """
        window = self.window if limit is None else min(self.window, limit)
        if window <= 0:
            return None
        clock = time.perf_counter
        start = clock()
        if start < self.off_until:
            return None
        end = start + window
        previous = start
        yielded = False
        while True:
            try:
                received: int | None = sock.recv_into(buffer, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                received = None
            now = clock()
            if now - previous > self.gap:  # contended: take what came, and stop polling a while
                self._fail(now)
                return received
            if received is not None:
                if yielded:
                    self._successes += 1
                    if self._successes >= self.streak:
                        self.backoff = self.min_backoff
                return received
            if now > end:
                self._fail(now)
                return None
            previous = now
            yielded = True
            os.sched_yield()

    def _fail(self, now: float) -> None:
        self._successes = 0
        self.off_until = now + self.backoff
        self.backoff = min(2 * self.backoff, self.max_backoff)


_POLICIES: dict[float, SpinPolicy] = {}  # window -> this process's policy for it


class Channel:
    """Framed pickle messages over a connected stream socket.

    Args:
        sock: the connected socket, in blocking mode.
        spin: how receives poll before blocking (default: :meth:`SpinPolicy.shared`).
    """

    def __init__(self, sock: socket.socket, spin: SpinPolicy | None = None) -> None:
        self.sock = sock
        self.spin = SpinPolicy.shared() if spin is None else spin
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
        limit = timeout if timeout is not None and timeout > 0 else None
        timed = False
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
                    # Poll first, unless a timeout is set already: a socket with a timeout waits
                    # (select) even for a non-blocking recv.
                    received = None if timed else self.spin.poll(self.sock, self._chunk_view, limit)
                    if received is None:
                        if limit is not None and not timed:
                            self.sock.settimeout(limit)
                            timed = True
                        received = self.sock.recv_into(self._chunk_view)
                except (ConnectionResetError, BrokenPipeError) as exc:
                    raise EOFError(str(exc)) from exc
                if not received:
                    raise EOFError("control channel closed")
                if not buffer and received >= 4:  # the usual case: exactly one whole message
                    (size,) = _HEADER.unpack_from(self._chunk)
                    if received == 4 + size:
                        return pickle.loads(self._chunk_view[4:received])
                buffer += self._chunk_view[:received]
        except TimeoutError:
            raise
        finally:
            if timed:
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
    # a server that sets, advances and reads in one go (nest_server: one request to NEST Server)
    combined_step = getattr(server, "step", None)
    while True:
        try:
            message = channel.recv()
        except EOFError:
            return
        op = message[0]
        phase = op
        try:
            if op == "step" and combined_step is not None:
                phase = "run_loop"
                reply = combined_step(message[1], message[2], get_request)
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
