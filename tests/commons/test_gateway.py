"""The one-port gateway: HTTP spliced to an upstream, MQTT over WebSocket bridged to a real broker."""

from __future__ import annotations

import http.server
import queue
import socket
import sys
import threading
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
import requests

from tests.helpers.brokers import BrokerProcess
from tests.helpers.processes import ServerProcess, start_server


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = f"{self.command} {self.path} {len(body)}".encode() + b"|" + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def start_gateway(http_port: int, mqtt_port: int, *extra: str) -> ServerProcess:
    return start_server(
        [
            sys.executable,
            "-m",
            "hbp_nrp_commons.gateway",
            "--port",
            "0",
            "--http",
            f"127.0.0.1:{http_port}",
            "--mqtt",
            f"127.0.0.1:{mqtt_port}",
            *extra,
        ]
    )


@pytest.fixture
def gateway(upstream: int, mqtt_broker: BrokerProcess) -> Iterator[ServerProcess]:
    server = start_gateway(upstream, mqtt_broker.port)
    yield server
    server.stop()


def test_http_requests_reach_the_upstream_untouched(gateway: ServerProcess) -> None:
    with requests.Session() as session:  # keep-alive: several requests on one connection
        first = session.get(f"{gateway.url}/proxy/storage/exp%2Fsub/a+b?byname=true")
        assert first.text == "GET /proxy/storage/exp%2Fsub/a+b?byname=true 0|"
        body = bytes(range(256)) * 1000
        second = session.post(f"{gateway.url}/storage/x/y", data=body)
        assert second.content == f"POST /storage/x/y {len(body)}|".encode() + body


def _ws_client(url: str, client_id: str, **ws_options: object) -> mqtt.Client:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, transport="websockets", protocol=mqtt.MQTTv311
    )
    client.ws_set_options(path="/", **ws_options)  # type: ignore[arg-type]
    client.connect(host, int(port))
    return client


def test_mqtt_over_websocket_reaches_the_broker(gateway: ServerProcess, mqtt_broker: BrokerProcess) -> None:
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    subscribed = threading.Event()
    ws = _ws_client(gateway.url, "gateway-ws")
    ws.on_message = lambda _c, _u, msg: received.put((msg.topic, msg.payload))
    ws.on_subscribe = lambda *_args: subscribed.set()
    ws.on_connect = lambda client, *_args: client.subscribe("#")
    ws.loop_start()
    try:
        assert subscribed.wait(15)
        tcp = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gateway-tcp")
        tcp.connect(mqtt_broker.host, mqtt_broker.port)
        tcp.loop_start()
        big = bytes(range(256)) * 600  # larger than one read of the bridge
        tcp.publish("nrp_simulation/1/status", big, qos=1).wait_for_publish(15)
        topic, payload = received.get(timeout=15)
        assert (topic, payload) == ("nrp_simulation/1/status", big)
        # and the other way: the WebSocket client publishes, a TCP subscriber receives
        got: queue.Queue[bytes] = queue.Queue()
        tcp_subscribed = threading.Event()
        tcp.on_message = lambda _c, _u, msg: got.put(msg.payload)
        tcp.on_subscribe = lambda *_args: tcp_subscribed.set()
        tcp.subscribe("from/browser")
        assert tcp_subscribed.wait(15)
        ws.publish("from/browser", b"hello", qos=1).wait_for_publish(15)
        assert got.get(timeout=15) == b"hello"
        tcp.loop_stop()
        tcp.disconnect()
    finally:
        ws.loop_stop()
        ws.disconnect()


def _handshake(url: str, extra: str = "") -> bytes:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(
            (
                "GET / HTTP/1.1\r\nHost: localhost:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: mqtt\r\n{extra}\r\n"
            ).encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def test_websocket_from_a_foreign_origin_is_refused(gateway: ServerProcess) -> None:
    assert _handshake(gateway.url, "Origin: http://evil.example\r\n").startswith(b"HTTP/1.1 403")
    # the page's own origin (same host and port as the Host header) is accepted
    assert _handshake(gateway.url, "Origin: http://localhost:1\r\n").startswith(b"HTTP/1.1 101")
    # localhost and 127.0.0.1 are the same machine, but another port is another origin
    assert _handshake(gateway.url, "Origin: http://127.0.0.1:1\r\n").startswith(b"HTTP/1.1 101")
    assert _handshake(gateway.url, "Origin: http://127.0.0.1:2\r\n").startswith(b"HTTP/1.1 403")


def test_allowed_origin_option_and_variable(
    upstream: int, mqtt_broker: BrokerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NRP_GATEWAY_ORIGINS", "http://other.example:8080")
    server = start_gateway(upstream, mqtt_broker.port, "--allow-origin", "http://localhost:3000")
    try:
        assert _handshake(server.url, "Origin: http://localhost:3000\r\n").startswith(b"HTTP/1.1 101")
        assert _handshake(server.url, "Origin: http://other.example:8080\r\n").startswith(b"HTTP/1.1 101")
        assert _handshake(server.url, "Origin: http://evil.example\r\n").startswith(b"HTTP/1.1 403")
    finally:
        server.stop()


def test_unreachable_upstreams_answer_502(mqtt_broker: BrokerProcess) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    server = start_gateway(dead, dead)
    try:
        response = requests.get(f"{server.url}/proxy/health", timeout=15)
        assert response.status_code == 502
        assert "storage server" in response.json()["message"]
        assert _handshake(server.url).startswith(b"HTTP/1.1 502")
    finally:
        server.stop()


def test_oversized_head_is_refused(gateway: ServerProcess) -> None:
    response = requests.get(f"{gateway.url}/", headers={"X-Big": "a" * 70000}, timeout=15)
    assert response.status_code == 431
