"""A recording lifecycle subclass and small waiting helpers for the commons tests."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from hbp_nrp_commons.lifecycle import (
    BACKEND_PROPAGATED,
    SIMSERVER_PROPAGATED,
    SimulationLifecycle,
    TransitionEvent,
)
from hbp_nrp_commons.mqtt import BACKEND_NODE, SIMSERVER_NODE, MqttConnection, client_id
from hbp_nrp_commons.settings import MqttSettings
from tests.helpers.waiting import HANG, wait_until


def wait_for(predicate: Callable[[], Any], timeout: float = HANG, message: str = "condition") -> None:
    wait_until(predicate, timeout, message)


class Recorder(SimulationLifecycle):
    """Records every callback: (callback, trigger, source, target, state seen, remote)."""

    def __init__(self, *args: Any, raise_in: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, str, str, str, str, bool]] = []
        self.threads: list[str] = []
        self.changes: list[tuple[str, str, str]] = []
        self.shutdowns: list[TransitionEvent | None] = []
        self.events: list[TransitionEvent] = []
        self.reconnects = 0
        self.raise_in = set(raise_in)

    def _record(self, name: str, event: TransitionEvent) -> None:
        self.calls.append((name, event.name, event.source, event.target, self.state, event.remote))
        self.events.append(event)
        self.threads.append(threading.current_thread().name)
        if name in self.raise_in:
            raise RuntimeError(f"{name} failed")

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]

    def initialize(self, event: TransitionEvent) -> None:
        self._record("initialize", event)

    def start(self, event: TransitionEvent | None = None) -> None:
        if event is None:
            super().start()
            return
        self._record("start", event)

    def pause(self, event: TransitionEvent) -> None:
        self._record("pause", event)

    def stop(self, event: TransitionEvent) -> None:
        self._record("stop", event)

    def fail(self, event: TransitionEvent) -> None:
        self._record("fail", event)

    def shutdown(self, event: TransitionEvent | None = None) -> None:
        self.shutdowns.append(event)
        super().shutdown(event)

    def on_state_changed(self, source: str, target: str, event: str) -> None:
        self.changes.append((source, target, event))

    def on_reconnect(self) -> None:
        self.reconnects += 1


def backend_like(sim_id: int, mqtt: MqttConnection | None, prefix: str = "", **kwargs: Any) -> Recorder:
    return Recorder(sim_id, mqtt, BACKEND_NODE, prefix, BACKEND_PROPAGATED, True, **kwargs)


def server_like(sim_id: int, mqtt: MqttConnection | None, prefix: str = "", **kwargs: Any) -> Recorder:
    return Recorder(sim_id, mqtt, SIMSERVER_NODE, prefix, SIMSERVER_PROPAGATED, False, **kwargs)


class Spy:
    """A separate client that records every message on a topic filter, decoded.

    :meth:`sync` is the positive sync point of "nothing else arrives" checks: it publishes a marker
    on the topic and waits for it, so every message the broker had before the marker has arrived.
    Markers (of every spy) are not recorded.
    """

    def __init__(self, settings: MqttSettings, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.topic = topic
        self._seen_markers: set[str] = set()
        self._changed = threading.Condition()
        self.connection = MqttConnection(settings, client_id("spy"))
        self.connection.connect(HANG)
        self.connection.subscribe(topic, self._on_message, timeout=HANG)

    def _on_message(self, topic: str, payload: bytes) -> None:
        with self._changed:
            marker = _marker(payload)
            if marker is None:
                self.messages.append((topic, payload))
            else:  # any spy's marker
                self._seen_markers.add(marker)
            self._changed.notify_all()

    def sync(self) -> None:
        """Publish a marker on the topic and wait until it arrives back."""
        marker = uuid.uuid4().hex
        self.connection.publish(_concrete(self.topic), {SYNC_KEY: marker}, qos=1, wait=True, timeout=HANG)
        with self._changed:
            if not self._changed.wait_for(lambda: marker in self._seen_markers, HANG):
                raise AssertionError(f"the sync marker on {self.topic} never arrived")

    def payloads(self) -> list[dict[str, Any] | None]:
        """Every message's JSON payload; None for an empty (retained-clearing) payload."""
        with self._changed:
            return [json.loads(p) if p else None for _, p in self.messages]

    def lifecycle(self) -> list[dict[str, Any]]:
        """The non-empty payloads."""
        return [p for p in self.payloads() if p is not None]

    def close(self) -> None:
        self.connection.close()


#: the key of a :meth:`Spy.sync` marker (a lifecycle ignores it as a malformed message).
SYNC_KEY = "spy_sync"


def _concrete(topic_filter: str) -> str:
    """A topic matched by ``topic_filter`` (its wildcard levels replaced)."""
    return "/".join(SYNC_KEY if level in ("+", "#") else level for level in topic_filter.split("/"))


def _marker(payload: bytes) -> str | None:
    try:
        decoded = json.loads(payload) if payload else None
    except ValueError:
        return None
    return decoded.get(SYNC_KEY) if isinstance(decoded, dict) else None


def retained(settings: MqttSettings, topic: str) -> list[bytes]:
    """What a new subscriber receives at once on ``topic``: its retained message, if any."""
    spy = Spy(settings, topic)
    try:
        spy.sync()  # the retained message reaches a new subscriber before anything published later
        return [p for _, p in spy.messages]
    finally:
        spy.close()
