"""The embedded amqtt broker process (``python -m hbp_nrp_commons.broker``)."""

from __future__ import annotations

import signal
import socket

import pytest

from hbp_nrp_commons.broker import port_is_free
from hbp_nrp_commons.mqtt import MqttConnection, client_id
from hbp_nrp_commons.settings import MqttSettings
from tests.helpers.processes import python, start_server
from tests.helpers.waiting import HANG

from .helpers import retained

BROKER = [python(), "-m", "hbp_nrp_commons.broker", "--host", "127.0.0.1", "--port"]


def test_start_on_a_free_port_retain_and_stop_cleanly() -> None:
    server = start_server([*BROKER, "0"])
    proc, host, port = server.proc, server.host, server.port
    try:
        assert (host, port > 0) == ("127.0.0.1", True)
        assert not port_is_free(host, port)
        settings = MqttSettings(host, port)
        connection = MqttConnection(settings, client_id("anonymous"))
        connection.connect()  # anonymous clients are accepted
        connection.publish("test/retained", {"a": 1}, qos=1, retain=True, wait=True)
        connection.close()
        assert retained(settings, "test/retained") == [b'{"a": 1}']
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(HANG) == 0
    assert port_is_free(host, port)


def test_port_is_free_detects_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not port_is_free("127.0.0.1", sock.getsockname()[1])


def test_busy_port_fails() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(RuntimeError, match="exited with code"):
            start_server([*BROKER, str(sock.getsockname()[1])], timeout=HANG)


def test_command_line_prints_listening_line_and_stops_on_sigint() -> None:
    server = start_server([*BROKER, "0"])
    try:
        assert server.url == f"mqtt://127.0.0.1:{server.port}"
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(HANG) == 0
    finally:
        server.kill()
