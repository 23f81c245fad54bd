"""The bounded HTTP edge both servers (REST and storage) run under waitress.

waitress reads a whole request (headers and body) before the application sees it, so every limit
that must hold before a byte reaches the app, authentication included, is set here:

- a body limit: a ``Content-Length`` over it is refused with 413 before the body is read, and a
  chunked body is cut (413) as soon as it passes it; nothing over the limit is buffered;
- an idle timeout (a connection with no request in service and no traffic for that long is
  closed) and a header timeout (a request whose headers are not complete that long after its
  first byte is closed: slow-header clients cannot hold a connection with a trickle);
- a connection cap that never stops the server from accepting: when a new connection would pass
  it, the connections idle the longest (no request in service) are closed first, so ``/health``
  keeps answering while someone holds hundreds of idle connections; waitress's own cap would
  stop accepting instead. ``poll`` replaces ``select``, which fails past 1024 descriptors;
- every answer waitress gives itself (413, 400 for a malformed request, 431, 500) is the JSON
  error body ``{"message", "type", "data"}`` of our APIs, with the server's extra headers (CORS).

This relies on waitress 3.0 internals (``HTTPChannel.request``, ``active_channels``,
``maintenance``); :func:`install_edge` refuses a server it does not recognise rather than leaving a
limit silently unenforced.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, MultiSocketServer
from waitress.task import ErrorTask

logger = logging.getLogger(__name__)

#: waitress's own connection cap, set out of reach: :class:`EdgeServerMixin` enforces ours.
WAITRESS_CONNECTION_LIMIT = 1_000_000


@dataclass(frozen=True)
class HttpLimits:
    """Limits of one server's HTTP edge.

    Attributes:
        max_body_bytes: largest request body accepted (413 beyond, before it is read).
        max_connections: open connections; past it the longest-idle ones are closed.
        idle_timeout: seconds a connection may sit with no request in service and no traffic.
        header_timeout: seconds from a request's first byte to the end of its headers.
    """

    max_body_bytes: int
    max_connections: int = 500
    idle_timeout: float = 60.0
    header_timeout: float = 10.0

    def waitress_options(self) -> dict[str, Any]:
        """Keyword arguments of ``waitress.create_server`` for these limits.

        waitress's body limit is one byte above ours, so it refuses larger bodies from their
        ``Content-Length`` and never cuts a body the app would accept.
        """
        return {
            "max_request_body_size": self.max_body_bytes + 1,
            "connection_limit": WAITRESS_CONNECTION_LIMIT,
            "channel_timeout": max(1, int(self.idle_timeout)),
            "cleanup_interval": 1,
            "asyncore_use_poll": True,
            "clear_untrusted_proxy_headers": True,
        }


def error_body(status: int, message: str, data: Any = None) -> dict[str, Any]:
    """The JSON error body of both APIs; ``type``: ``Client error`` (4xx) or ``Server Error``."""
    kind = "Client error" if 400 <= status < 500 else "Server Error"
    return {"message": message, "type": kind, "data": data}


class JsonErrorTask(ErrorTask):
    """waitress's own error answers as our JSON error bodies, with the server's extra headers."""

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
        headers.extend(getattr(self.channel.server, "edge_headers", {}).items())
        self.set_close_on_finish()
        self.content_length = len(payload)
        self.write(payload)


class EdgeChannel(HTTPChannel):
    """waitress's channel with JSON errors, remembering when its current request began."""

    error_task_class = JsonErrorTask
    #: ``time.time()`` of the first byte of the request being received (``None``: none).
    request_began: float | None = None

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_began = time.time()
        return bool(super().received(data))

    def idle(self) -> bool:
        """No request in service and nothing left to send: closing it loses no answer."""
        return not self.requests and not self.total_outbufs_len


class EdgeServerMixin:
    """The connection cap and the header timeout, on top of a waitress server class."""

    edge_limits: HttpLimits
    edge_headers: Mapping[str, str]
    active_channels: dict[int, Any]
    accepting: bool

    def readable(self) -> bool:
        super().readable()  # type: ignore[misc]  # runs waitress's maintenance
        return self.accepting

    def handle_accept(self) -> None:
        super().handle_accept()  # type: ignore[misc]
        self._enforce_cap()

    def _enforce_cap(self) -> None:
        channels = self.active_channels
        excess = len(channels) - self.edge_limits.max_connections
        if excess <= 0:
            return
        idle = sorted(
            (channel for channel in channels.values() if isinstance(channel, EdgeChannel) and channel.idle()),
            key=lambda channel: channel.last_activity,
        )
        for channel in idle[:excess]:
            channel.handle_close()
        self._evicted = getattr(self, "_evicted", 0) + min(excess, len(idle))
        now = time.monotonic()
        if now >= getattr(self, "_next_cap_warning", 0.0):  # one line per 10 s under attack
            self._next_cap_warning = now + 10.0
            logger.warning(
                "connection limit %d reached: %d idle connections closed so far",
                self.edge_limits.max_connections,
                self._evicted,
            )

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # type: ignore[misc]  # the idle timeout
        cutoff = now - self.edge_limits.header_timeout
        for channel in list(self.active_channels.values()):
            request = getattr(channel, "request", None)
            began = getattr(channel, "request_began", None)
            if request is not None and not request.headers_finished and began is not None and began < cutoff:
                channel.will_close = True


def install_edge(
    server: MultiSocketServer | BaseWSGIServer,
    listeners: Mapping[int, Any],
    limits: HttpLimits,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Put the edge limits on a server made by ``waitress.create_server(..., map=listeners)``.

    Args:
        server: what ``create_server`` returned.
        listeners: the ``map`` passed to ``create_server``: before ``run`` it holds the
            listening servers (one per address) and waitress's trigger.
        limits: the limits (the body limit must also be in ``create_server``'s options, see
            :meth:`HttpLimits.waitress_options`).
        headers: added to every error waitress answers itself (CORS).

    Raises:
        RuntimeError: a listener is not a waitress server this module knows.
    """
    del server  # the listeners are the servers that accept; a MultiSocketServer only runs the loop
    servers = [listener for listener in listeners.values() if isinstance(listener, BaseWSGIServer)]
    if not servers or any(
        getattr(listener, "channel_class", None) is not HTTPChannel for listener in servers
    ):
        raise RuntimeError(f"unknown waitress listeners {servers!r}: cannot bound their HTTP edge")
    for listener in servers:
        cls = type(listener)
        listener.__class__ = type(f"Edge{cls.__name__}", (EdgeServerMixin, cls), {})
        edge = cast(Any, listener)
        edge.edge_limits = limits
        edge.edge_headers = dict(headers or {})
        edge.channel_class = EdgeChannel


class MalformedAuthorization(ValueError):
    """An ``Authorization`` header that is not ``Bearer <one token>``."""


def parse_bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, the only form both servers accept.

    The scheme is case-insensitive (RFC 7235); the token is one word of visible ASCII characters.

    Returns:
        the token, or ``None`` when there is no header (or it is blank).

    Raises:
        MalformedAuthorization: another scheme (``Basic ...``), no token, or several words
            (``Bearer a b``).
    """
    if authorization is None or not authorization.strip():
        return None
    words = authorization.split()
    if len(words) != 2 or words[0].lower() != "bearer":
        raise MalformedAuthorization("expected 'Authorization: Bearer <token>'")
    token = words[1]
    if not token.isascii() or not token.isprintable():
        raise MalformedAuthorization("a token is visible ASCII characters")
    return token
