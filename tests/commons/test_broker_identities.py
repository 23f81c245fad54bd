"""The embedded broker with a secret: anonymous clients only subscribe, each identity publishes its own."""

from __future__ import annotations

import json
import queue
import secrets
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hbp_nrp_commons.mqtt_identity import BACKEND_USER, credential, may_publish, simulation_user
from tests.helpers.processes import ServerProcess, start_server

SECRET = secrets.token_hex(16)


@pytest.fixture(scope="module")
def broker() -> Iterator[ServerProcess]:
    args = [sys.executable, "-m", "hbp_nrp_commons.broker", "--host", "127.0.0.1", "--port", "0"]
    server = start_server(args, env={"NRP_MQTT_SECRET": SECRET}, timeout=20)
    yield server
    server.stop()


def client(broker: ServerProcess, username: str | None = None, password: str | None = None) -> paho.Client:
    """A connected paho client; raises ConnectionRefusedError when the broker refuses it."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
    if username is not None:
        c.username_pw_set(username, password)
    answers: queue.Queue[Any] = queue.Queue()
    c.on_connect = lambda _c, _u, _f, reason, _p=None: answers.put(reason)
    c.connect(broker.host, broker.port)
    c.loop_start()
    reason = answers.get(timeout=10)
    if reason.is_failure:
        c.loop_stop()
        raise ConnectionRefusedError(str(reason))
    return c


def subscriber(broker: ServerProcess, topic: str) -> tuple[paho.Client, queue.Queue[tuple[str, bytes]]]:
    """An anonymous subscriber to ``topic`` and the queue of what it receives."""
    c = client(broker)
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    subscribed: queue.Queue[bool] = queue.Queue()
    c.on_message = lambda _c, _u, msg: received.put((msg.topic, msg.payload))
    c.on_subscribe = lambda *_args: subscribed.put(True)
    c.subscribe(topic, qos=1)
    subscribed.get(timeout=10)
    return c, received


def publish(c: paho.Client, topic: str, payload: bytes) -> None:
    """Publish with QoS 1 and wait for the broker's acknowledgement (a denied message is acked too)."""
    c.publish(topic, payload, qos=1).wait_for_publish(10)


def first_after(broker: ServerProcess, topic: str, attempt: Callable[[], None]) -> bytes:
    """What a subscriber to ``topic`` receives first when ``attempt`` runs, then the REST server
    publishes ``marker`` there: ``marker`` itself means the attempt was dropped."""
    watcher, received = subscriber(broker, topic)
    backend = client(broker, BACKEND_USER, credential(SECRET, BACKEND_USER))
    try:
        attempt()
        publish(backend, topic, b"marker")
        return received.get(timeout=10)[1]
    finally:
        for c in (watcher, backend):
            c.loop_stop()
            c.disconnect()


def test_anonymous_clients_subscribe_but_cannot_publish(broker: ServerProcess) -> None:
    topic = "nrp_simulation/3/lifecycle"
    spoofer = client(broker)
    assert first_after(broker, topic, lambda: publish(spoofer, topic, b'{"state": "failed"}')) == b"marker"


def test_a_simulation_publishes_below_its_own_topics_only(broker: ServerProcess) -> None:
    own = simulation_user("", 4)
    sim = client(broker, own, credential(SECRET, own))
    assert (
        first_after(
            broker, "nrp_simulation/4/status", lambda: publish(sim, "nrp_simulation/4/status", b"mine")
        )
        == b"mine"
    )
    assert (
        first_after(broker, "nrp_simulation/5/status", lambda: publish(sim, "nrp_simulation/5/status", b"x"))
        == b"marker"
    )
    assert (
        first_after(
            broker, "nrp_simulation/40/status", lambda: publish(sim, "nrp_simulation/40/status", b"x")
        )
        == b"marker"
    )


def test_a_wrong_or_borrowed_password_is_refused(broker: ServerProcess) -> None:
    with pytest.raises(ConnectionRefusedError):
        client(broker, BACKEND_USER, "guess")
    with pytest.raises(ConnectionRefusedError):  # simulation 4's password does not make it simulation 5
        client(broker, simulation_user("", 5), credential(SECRET, simulation_user("", 4)))
    with pytest.raises(ConnectionRefusedError):
        client(broker, BACKEND_USER, credential("another secret", BACKEND_USER))


@pytest.mark.parametrize(
    ("username", "topic", "allowed"),
    [
        (None, "nrp_simulation/1/status", False),
        (BACKEND_USER, "anything/at/all", True),
        ("nrp_simulation/1", "nrp_simulation/1/status", True),
        ("nrp_simulation/1", "nrp_simulation/1", False),
        ("nrp_simulation/1", "nrp_simulation/12/status", False),
        ("p/nrp_simulation/1", "p/nrp_simulation/1/data/x", True),
        ("p/nrp_simulation/1", "nrp_simulation/1/status", False),
        ("someone", "someone/status", False),
    ],
)
def test_who_may_publish_where(username: str | None, topic: str, allowed: bool) -> None:
    assert may_publish(username, topic) is allowed


def test_the_datatransfer_engine_streams_with_its_simulations_identity(
    broker: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE
    from nrp_core.engines.datatransfer import DataTransferServer

    monkeypatch.setenv("NRP_MQTT_PASSWORD", credential(SECRET, simulation_user("pre", 7)))
    watcher, received = subscriber(broker, "pre/nrp_simulation/7/data/#")
    server = DataTransferServer()
    try:
        server.initialize(
            {
                "EngineName": "datatransfer_engine",
                "MQTTBroker": f"{broker.host}:{broker.port}",
                "MQTTPrefix": "pre",
                "simulationID": "7",
                "dumps": [{"name": "position", "network": True}],
            }
        )
        topic, announcement = received.get(timeout=10)  # published once connected: it was accepted
        assert topic == "pre/nrp_simulation/7/data"
        assert json.loads(announcement) == [{"topic": "pre/nrp_simulation/7/data/position", "type": "json"}]
        server.set_datapacks({"position": {"engine_name": "e", "type": JSON_DATAPACK_TYPE, "data": {"x": 1}}})
        assert received.get(timeout=10) == ("pre/nrp_simulation/7/data/position", b'{"x": 1}')
    finally:
        server.shutdown()
        watcher.loop_stop()
        watcher.disconnect()
