"""MqttConnection against real brokers (amqtt and, when installed, mosquitto)."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hbp_nrp_commons.mqtt import BrokerUnreachable, MqttConnection, clear_retained_matching, client_id
from hbp_nrp_commons.settings import MqttSettings
from tests.helpers.processes import free_port
from tests.helpers.waiting import HANG

from .helpers import retained, wait_for


@pytest.fixture
def connect(mqtt_broker):
    connections: list[MqttConnection] = []

    def make(name: str = "test") -> MqttConnection:
        connection = MqttConnection(mqtt_broker.settings(), client_id(name))
        connection.connect()
        connections.append(connection)
        return connection

    yield make
    for connection in connections:
        connection.close()


def unique_topic(name: str) -> str:
    return f"test/{name}/{client_id('t')}"


def test_unreachable_broker_raises() -> None:
    connection = MqttConnection(MqttSettings("127.0.0.1", free_port()), client_id("nobody"))
    with pytest.raises(BrokerUnreachable):
        connection.connect(timeout=1.0)
    assert isinstance(BrokerUnreachable("x"), ConnectionError)
    assert not connection.is_connected
    connection.close()


def test_publish_and_receive_in_a_worker_thread(connect) -> None:
    topic = unique_topic("pubsub")
    subscriber, publisher = connect("sub"), connect("pub")
    received: list[tuple[str, bytes, str]] = []
    subscriber.subscribe(topic + "/#", lambda t, p: received.append((t, p, threading.current_thread().name)))
    publisher.publish(topic + "/a", {"x": 1}, qos=1, wait=True)
    publisher.publish(topic + "/b", "text", wait=True)
    publisher.publish(topic + "/c", b"\x00\x01", qos=1)
    wait_for(lambda: len(received) == 3, message="three messages")
    assert [(t, p) for t, p, _ in received] == [
        (topic + "/a", json.dumps({"x": 1}).encode()),
        (topic + "/b", b"text"),
        (topic + "/c", b"\x00\x01"),
    ]
    assert all(not name.startswith("paho") for _, _, name in received)
    assert threading.main_thread().name not in {name for _, _, name in received}


def test_a_blocking_callback_does_not_stall_other_subscriptions(connect) -> None:
    topic = unique_topic("block")
    connection = connect()
    release = threading.Event()
    fast: list[bytes] = []
    connection.subscribe(topic + "/slow", lambda t, p: release.wait(HANG))
    connection.subscribe(topic + "/fast", lambda t, p: fast.append(p))
    connection.publish(topic + "/slow", b"1", qos=1, wait=True)
    # a callback that publishes and waits for the broker's ack must not deadlock either
    connection.subscribe(
        topic + "/echo", lambda t, p: connection.publish(topic + "/fast", p, qos=1, wait=True)
    )
    connection.publish(topic + "/echo", b"echoed", qos=1, wait=True)
    wait_for(lambda: fast == [b"echoed"], message="echo while another callback blocks")
    release.set()


def test_retained_message_and_clear(connect, mqtt_broker) -> None:
    topic = unique_topic("retain")
    connection = connect()
    connection.publish(topic, b"kept", qos=1, retain=True, wait=True)
    assert retained(mqtt_broker.settings(), topic) == [b"kept"]
    assert connection.clear_retained(topic) is True
    assert retained(mqtt_broker.settings(), topic) == []


def test_unsubscribe_stops_delivery(connect) -> None:
    topic = unique_topic("unsub")
    connection, publisher = connect("a"), connect("b")
    got: list[bytes] = []
    connection.subscribe(topic, lambda t, p: got.append(p))
    publisher.publish(topic, b"1", qos=1, wait=True)
    wait_for(lambda: got == [b"1"])
    connection.unsubscribe(topic, wait=True)
    synced: list[bytes] = []
    connection.subscribe(topic + "/sync", lambda t, p: synced.append(p))
    publisher.publish(topic, b"2", qos=1, wait=True)
    # the same publisher's next message arrives after "2" would have
    publisher.publish(topic + "/sync", b"sync", qos=1, wait=True)
    wait_for(lambda: synced == [b"sync"], message="the sync message")
    assert got == [b"1"]


def test_close_is_idempotent_and_publishing_after_close(connect) -> None:
    connection = connect()
    assert connection.is_connected
    connection.close()
    connection.close()
    assert not connection.is_connected
    assert connection.publish("test/closed", b"x") is False
    with pytest.raises(BrokerUnreachable):
        connection.publish("test/closed", b"x", wait=True)


def test_reconnect_resubscribes_and_runs_hooks(connect, mqtt_broker) -> None:
    topic = unique_topic("reconnect")
    subscriber, publisher = connect("sub"), connect("pub")
    got: list[bytes] = []
    hooks: list[str] = []
    subscriber.subscribe(topic, lambda t, p: got.append(p))
    subscriber.on_connect(lambda: hooks.append(threading.current_thread().name))
    mqtt_broker.restart()
    wait_for(lambda: subscriber.is_connected and publisher.is_connected, message="reconnect")
    wait_for(lambda: len(hooks) == 1, message="on_connect hook")
    assert not hooks[0].startswith("paho")

    # the re-subscription is requested before the hook runs: publish until the broker has it
    def delivered() -> bool:
        if not got:
            publisher.publish(topic, b"after", qos=1, wait=True)
        return bool(got)

    wait_for(delivered, message="a message after the re-subscription")
    assert set(got) == {b"after"}


def test_clear_retained_matching(connect, mqtt_broker) -> None:
    base = unique_topic("stale")
    connection = connect()
    for sim in ("1", "2"):
        connection.publish(f"{base}/{sim}/lifecycle", b"stale", qos=1, retain=True, wait=True)
    connection.publish(f"{base}/3/status", b"kept", qos=1, retain=True, wait=True)
    # ``settle`` is how long the function collects retained messages: generous for a busy machine
    cleared = clear_retained_matching(connection, f"{base}/+/lifecycle", settle=2.0)
    assert sorted(cleared) == [f"{base}/1/lifecycle", f"{base}/2/lifecycle"]
    assert retained(mqtt_broker.settings(), f"{base}/+/lifecycle") == []
    assert retained(mqtt_broker.settings(), f"{base}/3/status") == [b"kept"]


def test_retained_messages_reach_only_subscribers_once(mqtt_broker) -> None:
    """A new client gets a retained message once, when it subscribes, never unsolicited."""
    topic = unique_topic("once")
    settings = mqtt_broker.settings()
    holder = MqttConnection(settings, client_id("holder"))
    holder.connect()
    holder.subscribe(topic, lambda t, p: None)
    holder.publish(topic, b"init", qos=1, retain=True, wait=True)
    raw: list[tuple[str, bytes]] = []
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id("raw"))
    client.on_message = lambda c, u, m: raw.append((m.topic, m.payload))
    client.connect(settings.host, settings.port)
    client.loop_start()
    sync_topic = topic + "/sync"
    syncs = 0

    def sync() -> None:
        """Publish markers until one arrives: everything sent to the client before it has arrived."""
        nonlocal syncs
        syncs += 1
        marker = (sync_topic, str(syncs).encode())

        def arrived() -> bool:
            if marker not in raw:
                holder.publish(*marker, qos=1, wait=True)
            return marker in raw

        wait_for(arrived, message="the sync marker")

    try:
        client.subscribe(sync_topic, qos=1)
        sync()
        assert [m for m in raw if m[0] == topic] == []  # nothing unsolicited on connect
        client.subscribe(topic, qos=1)
        wait_for(lambda: (topic, b"init") in raw)
        sync()
        assert [m for m in raw if m[0] == topic] == [(topic, b"init")]
    finally:
        client.disconnect()
        client.loop_stop()
        holder.clear_retained(topic)
        holder.close()
