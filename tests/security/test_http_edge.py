"""The HTTP edge of both servers: body limits before buffering and auth, timeouts, connection cap,
JSON errors for what the WSGI server answers itself (``hbp_nrp_commons.http_edge``)."""

from __future__ import annotations

import json
import socket
import time
from contextlib import ExitStack
from typing import Any

import requests

from tests.security.conftest import HEADER_TIMEOUT, Server

#: Generous deadline for any answer (never a bound on speed: a loaded machine is slow).
DEADLINE = 60.0


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(server.host_port, timeout=DEADLINE)
    sock.settimeout(DEADLINE)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP response read from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def json_error(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, body)
    payload = json.loads(body)
    assert set(payload) == {"message", "type", "data"}
    assert payload["type"] == "Client error"
    return payload


def post_head(server: Server, path: str, length: int, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def upload_path(server: Server) -> str:
    return "/simulation" if server.name == "rest" else "/storage/someexp/file.bin"


def test_an_800_mb_body_without_a_token_is_refused_before_it_is_sent(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(post_head(server, upload_path(server), 800 * 1024 * 1024, None))
        status, headers, body = read_response(sock)  # no byte of the body was sent
    assert status == 413
    json_error(status, headers, body)


def test_a_body_over_the_limit_with_a_token_is_refused_before_it_is_sent(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(post_head(server, upload_path(server), 64 * 1024 * 1024, server.token))
        status, headers, body = read_response(sock)
    assert status == 413
    assert "limit" in json_error(status, headers, body)["message"]


def test_a_chunked_body_over_the_limit_is_cut_with_413(server: Server) -> None:
    """No Content-Length to refuse: the server stops at the limit instead of buffering it all."""
    head = (
        f"POST {upload_path(server)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n" % (1024 * 1024) + b"0" * (1024 * 1024) + b"\r\n"
    with connect(server) as sock:
        sock.sendall(head)
        try:
            for _ in range(64):  # 64 MB: over both servers' limits in these tests
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed: what follows reads its answer
        status, headers, body = read_response(sock)
    assert status == 413
    json_error(status, headers, body)


def test_a_malformed_request_gets_a_json_400(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        status, headers, body = read_response(sock)
    assert status == 400
    json_error(status, headers, body)
    assert headers.get("access-control-allow-origin") == "*"


def test_health_answers_while_200_idle_connections_are_held(server: Server) -> None:
    with ExitStack() as stack:
        for _ in range(200):
            stack.enter_context(connect(server))
        # half-open requests too: headers started, never finished
        for _ in range(20):
            sock = stack.enter_context(connect(server))
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        response = requests.get(server.url + server.health, timeout=DEADLINE)
        assert response.status_code == 200


def test_health_answers_past_the_connection_cap(start_backend: Any) -> None:
    """Past ``NRP_HTTP_MAX_CONNECTIONS`` the longest-idle connections are closed, never new ones refused."""
    backend = start_backend(NRP_HTTP_MAX_CONNECTIONS="20")
    target = Server("rest", backend.url, "", "/health")
    with ExitStack() as stack:
        held = [stack.enter_context(connect(target)) for _ in range(60)]
        response = requests.get(target.url + "/health", timeout=DEADLINE)
        assert response.status_code == 200
        # the oldest ones were closed by the server
        held[0].settimeout(DEADLINE)
        assert held[0].recv(1) == b""


def test_a_request_trickling_its_headers_is_closed_after_the_header_timeout(server: Server) -> None:
    """One header byte per half second keeps a connection active, but not past the header timeout."""
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.5)
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < HEADER_TIMEOUT + DEADLINE:
            try:
                sock.sendall(b"X")
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue  # still open: keep trickling
            except OSError:
                closed = True
                break
        assert closed, "the server kept a request whose headers never ended"
