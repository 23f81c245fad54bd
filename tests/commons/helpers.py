"""A recording lifecycle subclass and small waiting helpers for the commons tests."""

from __future__ import annotations

import json
import threading
import time
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


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.01)


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
    """A separate client that records every message on a topic filter, decoded."""

    def __init__(self, settings: MqttSettings, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.connection = MqttConnection(settings, client_id("spy"))
        self.connection.connect()
        self.connection.subscribe(topic, lambda t, p: self.messages.append((t, p)))

    def payloads(self) -> list[dict[str, Any] | None]:
        """Every message's JSON payload; None for an empty (retained-clearing) payload."""
        return [json.loads(p) if p else None for _, p in self.messages]

    def lifecycle(self) -> list[dict[str, Any]]:
        """The non-empty payloads."""
        return [p for p in self.payloads() if p is not None]

    def close(self) -> None:
        self.connection.close()


def retained(settings: MqttSettings, topic: str, wait: float = 0.5) -> list[bytes]:
    """What a new subscriber receives at once on ``topic``: its retained message, if any."""
    spy = Spy(settings, topic)
    try:
        time.sleep(wait)
        return [p for _, p in spy.messages]
    finally:
        spy.close()
