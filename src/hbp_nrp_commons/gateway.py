"""One public port for the NRP frontend: HTTP to the storage server, MQTT over WebSocket to the broker.

The original deployment put HAProxy on port 9000: ``/proxy/...`` went to the storage proxy, the
frontend's static files were served next to it, and a WebSocket upgrade went to the broker's
WebSocket listener. The stock frontend build has those URLs baked in (``http://localhost:9000/proxy``,
``ws://localhost:9000``). This gateway is that port::

    python -m hbp_nrp_commons.gateway --port 9000 --http 127.0.0.1:PORT --mqtt 127.0.0.1:1883

It routes each TCP connection by its first request:

- a WebSocket upgrade (``Upgrade: websocket``, any path) is accepted here and bridged to the broker's
  plain MQTT/TCP listener: the payload of every data frame goes to the broker as bytes, and what the
  broker sends comes back as binary frames (MQTT is a byte stream, so frame boundaries do not
  matter). Any MQTT 3.1.1 broker works, embedded or external, without a WebSocket listener of its own;
- anything else is spliced byte for byte to the HTTP upstream (the storage server, which also serves
  the frontend's files), so request paths, bodies and keep-alive reach it untouched.

Browsers open a fresh connection for every WebSocket, so routing per connection is enough; a
WebSocket upgrade arriving later on a kept-alive HTTP connection reaches the storage server, which
answers 400.

WebSocket upgrades from a browser page of another origin are refused (403) unless that origin is
allowed with ``--allow-origin``: without that check any web page the user opens could publish
lifecycle commands to the broker. Clients that send no ``Origin`` (non-browser clients) are accepted,
and so are pages on another loopback name of the same port (``localhost`` vs ``127.0.0.1``).
``NRP_GATEWAY_ORIGINS`` (comma-separated) adds to ``--allow-origin``.

Limits: request head 64 KiB, 30 s to send it, 1024 connections at once, WebSocket frames 1 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
HEAD_TIMEOUT = 30.0
MAX_CONNECTIONS = 1024
MAX_FRAME = 1024 * 1024
CHUNK = 64 * 1024
MQTT_SUBPROTOCOLS = ("mqtt", "mqttv3.1")
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def parse_address(value: str, option: str) -> tuple[str, int]:
    """``host:port`` as a pair.

    Raises:
        ValueError: not ``host:port`` with a port in 1..65535; the message names ``option``.
    """
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{option} must be host:port, got {value!r}")
    return host.strip("[]"), int(port)


def _header(head: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` (lower case) in a raw request head, or ``None``."""
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


def is_websocket_upgrade(head: bytes) -> bool:
    upgrade = _header(head, b"upgrade")
    return upgrade is not None and upgrade.lower() == b"websocket"


@dataclass
class Gateway:
    """The routing of one public port.

    Args:
        http: the HTTP upstream (storage server) as ``(host, port)``.
        mqtt: the MQTT broker's TCP listener as ``(host, port)``.
        allowed_origins: browser origins (``scheme://host:port``) allowed to open the MQTT WebSocket
            besides the gateway's own.
    """

    http: tuple[str, int]
    mqtt: tuple[str, int]
    allowed_origins: frozenset[str] = frozenset()
    _slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONNECTIONS))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one accepted connection until either side closes."""
        if self._slots.locked():
            writer.close()
            return
        async with self._slots:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            except asyncio.LimitOverrunError:
                await _plain_error(writer, 431, "Request Header Fields Too Large")
                return
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                writer.close()
                return
            try:
                if is_websocket_upgrade(head):
                    await self._bridge_mqtt(head, reader, writer)
                else:
                    await self._splice_http(head, reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            except Exception:  # noqa: BLE001 - one broken connection must not stop the gateway
                log.exception("gateway connection failed")
            finally:
                writer.close()

    # HTTP

    async def _splice_http(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.http)
        except OSError:
            await _plain_error(writer, 502, "Bad Gateway: the storage server does not answer")
            return
        up_writer.write(head)
        try:
            await _pipe_both(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()

    # MQTT over WebSocket

    def _origin_allowed(self, head: bytes) -> bool:
        origin = _header(head, b"origin")
        if origin is None:
            return True
        text = origin.decode("latin-1").rstrip("/")
        if text in self.allowed_origins or "*" in self.allowed_origins:
            return True
        host = (_header(head, b"host") or b"").decode("latin-1")
        parts = urlsplit(text)
        if not host or parts.scheme not in ("http", "https"):
            return False
        if parts.netloc == host:
            return True
        # localhost and 127.0.0.1 name the same machine: the stock build says localhost:9000
        served = urlsplit(f"//{host}")
        try:
            same_port = (parts.port or 80) == (served.port or 80)
        except ValueError:
            return False
        return same_port and parts.hostname in LOOPBACK and served.hostname in LOOPBACK

    async def _bridge_mqtt(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        from websockets.datastructures import Headers
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Request, Response
        from websockets.server import ServerProtocol
        from websockets.typing import Subprotocol

        DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)  # noqa: N806
        protocol = ServerProtocol(
            subprotocols=[Subprotocol(name) for name in MQTT_SUBPROTOCOLS], max_size=MAX_FRAME
        )
        protocol.receive_data(head)
        events = protocol.events_received()
        request = events[0] if events else None
        if not isinstance(request, Request):
            await _plain_error(writer, 400, "Bad Request: malformed WebSocket handshake")
            return
        if not self._origin_allowed(head):
            response = protocol.reject(403, "WebSocket connections from this origin are not allowed\n")
        else:
            response = protocol.accept(request)
        broker: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        if response.status_code == 101:
            try:
                broker = await asyncio.open_connection(*self.mqtt)
            except OSError:
                response = Response(
                    502,
                    "Bad Gateway",
                    Headers([("Content-Type", "text/plain"), ("Connection", "close")]),
                    b"The MQTT broker does not answer\n",
                )
        protocol.send_response(response)
        await _flush(protocol, writer)
        if broker is None:
            return
        broker_reader, broker_writer = broker

        async def client_to_broker() -> None:
            while chunk := await reader.read(CHUNK):
                protocol.receive_data(chunk)
                for frame in protocol.events_received():
                    if isinstance(frame, Frame) and frame.opcode in DATA_OPCODES and frame.data:
                        broker_writer.write(frame.data)
                await broker_writer.drain()
                await _flush(protocol, writer)  # pongs and the answer to a close
                if protocol.close_expected():
                    return
            protocol.receive_eof()

        async def broker_to_client() -> None:
            while chunk := await broker_reader.read(CHUNK):
                protocol.send_binary(chunk)
                await _flush(protocol, writer)
            protocol.send_close(1001, "MQTT broker closed the connection")
            await _flush(protocol, writer)

        try:
            await _first_done(client_to_broker(), broker_to_client())
        finally:
            broker_writer.close()


async def _first_done(*coroutines: object) -> None:
    """Run coroutines until the first one ends; cancel the others and re-raise its error, if any."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]  # type: ignore[call-overload]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    for task in done:
        exc = task.exception()
        if exc is not None and not isinstance(exc, ConnectionError | asyncio.IncompleteReadError):
            raise exc


async def _pipe_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways; a client half-close is passed on, the upstream closing ends the connection."""

    async def client_to_upstream() -> None:
        while chunk := await reader.read(CHUNK):
            up_writer.write(chunk)
            await up_writer.drain()
        if up_writer.can_write_eof():
            up_writer.write_eof()
        await asyncio.Event().wait()  # keep going until the upstream has answered and closed

    async def upstream_to_client() -> None:
        while chunk := await up_reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()

    await _first_done(client_to_upstream(), upstream_to_client())
    await _drain(writer)


async def _flush(protocol: object, writer: asyncio.StreamWriter) -> None:
    for chunk in protocol.data_to_send():  # type: ignore[attr-defined]
        if chunk:
            writer.write(chunk)
    await writer.drain()


async def _drain(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _plain_error(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    body = (
        '{"message": "'
        + reason
        + '", "type": "'
        + ("Client error" if status < 500 else "Server Error")
        + '", '
        '"data": null}'
    ).encode()
    writer.write(
        f"HTTP/1.1 {status} {reason.split(':')[0]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
        + body
    )
    await _drain(writer)
    writer.close()


async def serve(
    host: str,
    port: int,
    gateway: Gateway,
    stop: asyncio.Event,
    ready: object = None,
) -> None:
    """Serve ``gateway`` on ``host:port`` (0 = a free port) until ``stop`` is set.

    Args:
        ready: called with the bound port once connections are accepted.
    """
    server = await asyncio.start_server(gateway.handle, host, port, limit=MAX_HEAD, reuse_address=True)
    try:
        bound = server.sockets[0].getsockname()[1]
        if callable(ready):
            ready(bound)
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m hbp_nrp_commons.gateway``."""
    parser = argparse.ArgumentParser(
        prog="python -m hbp_nrp_commons.gateway",
        description="One port for the NRP frontend: HTTP to storage, MQTT over WebSocket to the broker.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="port to bind, 0 for any (default 9000)")
    parser.add_argument("--http", required=True, help="HTTP upstream host:port (the storage server)")
    parser.add_argument("--mqtt", required=True, help="MQTT broker host:port (plain TCP listener)")
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="browser origin (scheme://host:port, or *) also allowed to open the MQTT WebSocket",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        http = parse_address(args.http, "--http")
        mqtt = parse_address(args.mqtt, "--mqtt")
    except ValueError as exc:
        parser.error(str(exc))
    from_env = os.environ.get("NRP_GATEWAY_ORIGINS", "").split(",")
    origins = frozenset(o.strip().rstrip("/") for o in [*args.allow_origin, *from_env] if o.strip())

    def ready(bound: int) -> None:
        sys.stdout.write(f"Listening on http://{args.host}:{bound}\n")
        sys.stdout.flush()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(args.host, args.port, Gateway(http, mqtt, origins), stop, ready)

    try:
        asyncio.run(run())
    except OSError as exc:
        sys.stderr.write(
            f"gateway: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
            "choose another port with --storage-port or NRP_STORAGE_PORT\n"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
