"""Two lifecycles, a backend-like and a server-like one, kept in step over a real broker.

Covers the lifecycle topic names, a sequence of local triggers and the same sequence received by
the peer, failures on either side, connecting (stale retained messages cleared), and the message
rules: only the message leaving ``created`` is retained, ``stopped`` never travels, a node ignores
its own messages, and the backend re-publishes its last message after a reconnect.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hbp_nrp_commons.lifecycle import InvalidTransitionError
from hbp_nrp_commons.mqtt import MqttConnection, client_id, lifecycle_topic
from tests.helpers.waiting import HANG, wait_until

from .helpers import Recorder, Spy, backend_like, retained, server_like, wait_for


def msg(node: str, source: str, event: str, target: str) -> dict[str, str]:
    return {"source_node": node, "source_state": source, "event": event, "target_state": target}


@dataclass
class Pair:
    backend: Recorder
    server: Recorder
    spy: Spy
    topic: str
    settings: object

    def retained(self) -> list[dict[str, str]]:
        return [json.loads(p) for p in retained(self.settings, self.topic)]

    def initialize_both(self) -> None:
        """Connect both sides and bring the server to ``paused`` through the backend."""
        self.backend.connect()
        self.server.connect()
        self.backend.initialized()
        wait_for(lambda: self.server.state == "paused")

    def start_both(self) -> None:
        """Connect both sides and bring them to ``started`` through the backend."""
        self.backend.connect()
        self.server.connect()
        self.backend.initialized()
        self.backend.started()
        wait_for(lambda: self.server.state == "started")


@pytest.fixture
def make_pair(mqtt_broker) -> Iterator:
    made: list[Pair] = []

    def make(prefix: str = "", backend_cls: type[Recorder] = Recorder, **server_kwargs: object) -> Pair:
        sim_id = random.randrange(10**6, 10**7)
        settings = mqtt_broker.settings(prefix)
        topic = lifecycle_topic(prefix, sim_id)
        spy = Spy(settings, topic)

        def connection(base: str) -> MqttConnection:
            return MqttConnection(settings, client_id(base, sim_id))

        backend = backend_like(sim_id, connection("nrp_backend"), prefix)
        if backend_cls is not Recorder:
            backend.__class__ = backend_cls
        server = server_like(sim_id, connection("nrp_simulation_server"), prefix, **server_kwargs)
        pair = Pair(backend, server, spy, topic, settings)
        made.append(pair)
        return pair

    yield make
    for pair in made:
        pair.backend.shutdown()
        pair.server.shutdown()
        pair.spy.close()


@pytest.mark.parametrize("prefix", ["", "pfx"])
def test_local_and_remote_sequence(make_pair, prefix: str) -> None:
    pair = make_pair(prefix)
    backend, server = pair.backend, pair.server
    assert pair.topic.startswith("pfx/nrp_simulation/" if prefix else "nrp_simulation/")
    node = f"{prefix}_nrp_backend" if prefix else "nrp_backend"
    backend.connect()
    backend.initialized()
    init = msg(node, "created", "initialized", "paused")
    wait_for(lambda: pair.spy.lifecycle() == [init], message="init message")
    assert pair.retained() == [init]  # retained: it leaves ``created``

    server.connect()  # subscribes after the publication: the retained copy reaches it
    wait_for(lambda: server.state == "paused", message="server initialized")
    server.clear_retained()
    assert pair.retained() == []

    for trigger in ("started", "paused", "started"):
        backend.accept_command(trigger)
        wait_for(lambda t=trigger: server.state == t, message=f"server {trigger}")
    assert backend.accept_command("started") is False  # silent no-op
    backend.stopped()
    pair.spy.sync()

    assert backend.names() == ["initialize", "start", "pause", "start", "stop"]
    assert backend.state == "stopped" and backend.done_event.is_set()
    assert pair.spy.lifecycle() == [
        init,
        msg(node, "paused", "started", "started"),
        msg(node, "started", "paused", "paused"),
        msg(node, "paused", "started", "started"),
    ]
    assert pair.spy.payloads()[-1] is None  # the backend cleared the topic at shutdown
    assert not backend.mqtt.is_connected

    # the same events received from another node run the callbacks and publish nothing
    assert server.calls == [
        ("initialize", "initialized", "created", "paused", "created", True),
        ("start", "started", "paused", "started", "paused", True),
        ("pause", "paused", "started", "paused", "started", True),
        ("start", "started", "paused", "started", "paused", True),
    ]
    assert not any(name.startswith("paho") or name == "MainThread" for name in server.threads)
    assert server.state == "started"  # ``stopped`` never travels over MQTT
    server.stopped()
    pair.spy.sync()
    assert all(m["source_node"] == node for m in pair.spy.lifecycle())


def test_only_messages_leaving_created_are_retained(make_pair) -> None:
    pair = make_pair()
    pair.backend.connect()
    pair.backend.initialized()
    pair.backend.started()
    wait_for(lambda: len(pair.spy.lifecycle()) == 2)
    assert [m["event"] for m in pair.retained()] == ["initialized"]


def test_connect_clears_stale_retained_message_and_subscribes(make_pair) -> None:
    pair = make_pair()
    stale = msg("nrp_simulation_server", "started", "completed", "completed")
    publisher = pair.spy.connection
    publisher.publish(pair.topic, stale, qos=1, retain=True, wait=True)
    assert pair.retained() == [stale]
    pair.backend.connect()
    assert pair.retained() == []
    assert pair.backend.state == "created"  # the stale message was cleared before subscribing
    publisher.publish(pair.topic, msg("nrp_simulation_server", "created", "failed", "failed"), qos=1)
    wait_for(lambda: pair.backend.state == "failed", message="subscribed backend follows")


def test_shutdown_clears_unsubscribes_and_disconnects(make_pair) -> None:
    pair = make_pair()
    pair.backend.connect()
    pair.backend.initialized()
    wait_for(lambda: len(pair.retained()) == 1)
    pair.backend.shutdown()
    pair.backend.shutdown()  # idempotent
    assert pair.retained() == []
    assert not pair.backend.mqtt.is_connected
    pair.spy.connection.publish(pair.topic, msg("nrp_simulation_server", "paused", "failed", "failed"), qos=1)
    pair.spy.sync()  # the message went through the broker: a subscribed backend would have got it
    assert pair.backend.state == "paused"


def test_server_completion_reaches_backend_silently(make_pair) -> None:
    pair = make_pair()
    pair.start_both()
    pair.server.completed()
    wait_for(lambda: pair.backend.state == "completed", message="backend completed")
    pair.spy.sync()
    assert [m["event"] for m in pair.spy.lifecycle()] == ["initialized", "started", "completed"]
    assert pair.spy.lifecycle()[-1] == msg("nrp_simulation_server", "started", "completed", "completed")
    assert pair.backend.changes[-1] == ("started", "completed", "completed")


def test_failing_local_initialize_fails_and_clears_on_shutdown(make_pair) -> None:
    pair = make_pair()
    pair.backend.raise_in = {"initialize"}
    pair.backend.connect()
    with pytest.raises(RuntimeError):
        pair.backend.initialized()
    assert pair.backend.state == "failed"
    assert pair.backend.names() == ["initialize", "stop"]
    pair.spy.sync()
    # connect clear, shutdown clear; ``failed`` is not a backend destination
    assert pair.spy.payloads() == [None, None]


def test_failing_remote_initialize_publishes_paused_to_failed(make_pair) -> None:
    pair = make_pair(raise_in={"initialize"})
    pair.backend.connect()
    pair.server.connect()
    pair.backend.initialized()
    wait_for(lambda: pair.server.state == "failed", message="server failed")
    wait_for(lambda: pair.backend.state == "failed", message="backend follows")
    failed = msg("nrp_simulation_server", "paused", "failed", "failed")
    # the backend got it, the spy may not have yet
    wait_for(lambda: failed in pair.spy.lifecycle(), message="the failed message at the spy")
    pair.spy.sync()
    assert pair.spy.lifecycle()[-1] == failed
    assert pair.server.names() == ["initialize", "fail"]
    assert pair.backend.calls[-1] == ("fail", "failed", "paused", "failed", "failed", True)
    assert pair.server.done_event.wait(HANG) and pair.backend.done_event.wait(HANG)
    assert failed not in pair.retained()  # not retained; the backend cleared the topic at shutdown
    assert pair.retained() == []


def test_remote_failed_while_started_runs_fail_without_publishing(make_pair) -> None:
    pair = make_pair()
    pair.start_both()
    pair.server.failed()
    wait_for(lambda: pair.backend.state == "failed", message="backend failed")
    assert pair.backend.done_event.wait(HANG)
    pair.spy.sync()
    assert pair.backend.calls[-1] == ("fail", "failed", "started", "failed", "failed", True)
    assert [m["source_node"] for m in pair.spy.lifecycle()] == ["nrp_backend"] * 2 + ["nrp_simulation_server"]


def test_message_from_a_final_state_is_ignored(make_pair) -> None:
    # no transition leaves stopped or failed: forcing one would end without the final shutdown
    pair = make_pair()
    pair.initialize_both()
    message = msg("nrp_backend", "stopped", "failed", "failed")
    pair.spy.connection.publish(pair.topic, message, qos=1, wait=True)
    # a valid message after it, from the same client: the server handles them in order
    pair.spy.connection.publish(pair.topic, msg("nrp_backend", "paused", "started", "started"), qos=1)
    wait_for(lambda: pair.server.state == "started", message="the server to apply the later message")
    assert not pair.server.done_event.is_set()
    assert "fail" not in pair.server.names()


def test_remote_stop_that_raises_fails_with_the_final_shutdown(make_pair) -> None:
    pair = make_pair(raise_in={"stop"})
    pair.initialize_both()
    message = msg("nrp_backend", "paused", "stopped", "stopped")
    pair.spy.connection.publish(pair.topic, message, qos=1, wait=True)
    assert pair.server.done_event.wait(HANG)
    assert pair.server.state == "failed"
    assert pair.server.names()[-2:] == ["stop", "fail"]
    assert len(pair.server.shutdowns) == 1


class ResyncingBackend(Recorder):
    """Re-publishes its last message after a reconnect (a message may have been lost meanwhile)."""

    def on_reconnect(self) -> None:
        super().on_reconnect()
        self.republish_last()


def test_broker_restart_both_reconnect_and_resubscribe(make_pair, mqtt_broker) -> None:
    pair = make_pair(backend_cls=ResyncingBackend)
    backend, server = pair.backend, pair.server
    backend.connect()
    server.connect()
    backend.initialized()
    wait_for(lambda: server.state == "paused")

    mqtt_broker.restart()
    wait_for(lambda: backend.reconnects >= 1 and server.reconnects >= 1, message="reconnects")
    wait_for(lambda: backend.mqtt.is_connected and server.mqtt.is_connected, message="connected")
    assert server.names() == ["initialize"]  # the re-published init message was already applied

    # the lost-message case: a command published while the broker is down may reach the broker
    # before the peer has re-subscribed; the backend re-publishes while the peer's state (its
    # status, in the real system) disagrees
    mqtt_broker.kill()
    backend.started()
    mqtt_broker.restart()

    def server_started() -> bool:
        if server.state == "started":
            return True
        if backend.mqtt.is_connected:
            backend.republish_last()
        return False

    wait_until(server_started, interval=0.2, message="the server to follow the re-published start")

    backend.paused()  # and the subscriptions work again in both directions
    wait_for(lambda: server.state == "paused", message="server paused after restart")
    backend.started()
    wait_for(lambda: server.state == "started")
    server.completed()
    wait_for(lambda: backend.state == "completed", message="backend completed after restart")
    assert server.names() == ["initialize", "start", "pause", "start"]


def test_triggers_over_broker(make_pair) -> None:
    pair = make_pair()
    backend = pair.backend
    backend.connect()
    backend.connect()  # idempotent
    for trigger in ("started", "paused", "completed", "bogus"):
        with pytest.raises(InvalidTransitionError):
            backend.accept_command(trigger)
    assert backend.state == "created" and backend.calls == []
    backend.initialized(experiment="husky")
    assert backend.calls == [("initialize", "initialized", "created", "paused", "created", False)]
    assert backend.events[0].data == {"experiment": "husky"}
    assert backend.accept_command("initialized") is False
    assert backend.accept_command("paused") is False
    # The spy's sync marker orders only its own messages: wait for the backend's message itself,
    # then sync, so that anything the no-ops might have published would have arrived too.
    wait_for(lambda: len(pair.spy.payloads()) >= 2, message="the initialized message")
    pair.spy.sync()
    # the connect clear, then exactly one message: the no-ops published nothing
    assert pair.spy.payloads() == [None, msg("nrp_backend", "created", "initialized", "paused")]
