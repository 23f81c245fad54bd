"""MQTT topics, node names and a small thread-safe client on paho-mqtt 2.x.

Every NRP component (backend lifecycle, simserver lifecycle, status notifier, datatransfer engine)
talks to the broker through :class:`MqttConnection`:

- MQTT 3.1.1, clean session, automatic reconnect; every subscription is renewed after each
  (re)connect because a clean session forgets them;
- message callbacks never run in paho's network thread: each subscription owns a worker thread
  that receives its messages in order, so a callback may block (or publish and wait for the
  broker's acknowledgement) without stalling the connection;
- ``on_connect`` hooks run after every (re)connect, in the connection's own event thread.

Topic layout: ``[P/]nrp_simulation/<id>/<leaf>`` (``P`` the optional topic prefix); with an empty
prefix there is no leading slash.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from hbp_nrp_commons.settings import MqttSettings

logger = logging.getLogger(__name__)

TOPIC_ROOT = "nrp_simulation"
BACKEND_NODE = "nrp_backend"
SIMSERVER_NODE = "nrp_simulation_server"
NOTIFIER_NODE = "mqtt_notifier"

MessageCallback = Callable[[str, bytes], None]
ConnectCallback = Callable[[], None]

_KEEPALIVE = 15
_RECONNECT_MIN_DELAY = 1
_RECONNECT_MAX_DELAY = 2
_RESUBSCRIBE_TIMEOUT = 5.0


# --------------------------------------------------------------------------------------- topics


def simulation_topic(prefix: str, sim_id: int | str, leaf: str = "") -> str:
    """Return ``[prefix/]nrp_simulation/<sim_id>[/leaf]``.

    Args:
        prefix: the topic prefix (``NRP_MQTT_PREFIX``); empty for none. Surrounding slashes are ignored.
        sim_id: the simulation id, or ``+`` for a wildcard subscription.
        leaf: the last topic level(s), e.g. ``lifecycle``; empty for the simulation's base topic.
    """
    parts = [p for p in (prefix.strip("/"), TOPIC_ROOT, str(sim_id), leaf.strip("/")) if p]
    return "/".join(parts)


def lifecycle_topic(prefix: str, sim_id: int | str) -> str:
    """The lifecycle synchronisation topic ``[P/]nrp_simulation/<id>/lifecycle``."""
    return simulation_topic(prefix, sim_id, "lifecycle")


def status_topic(prefix: str, sim_id: int | str) -> str:
    """The status topic ``[P/]nrp_simulation/<id>/status``."""
    return simulation_topic(prefix, sim_id, "status")


def runtime_error_topic(prefix: str, sim_id: int | str) -> str:
    """The runtime error topic ``[P/]nrp_simulation/<id>/runtime_error``."""
    return simulation_topic(prefix, sim_id, "runtime_error")


def data_topic(prefix: str, sim_id: int | str, datapack: str | None = None) -> str:
    """The data announcement topic ``[P/]nrp_simulation/<id>/data``, or one datapack's topic below it."""
    return simulation_topic(prefix, sim_id, f"data/{datapack}" if datapack else "data")


def node_name(prefix: str, base: str) -> str:
    """The ``source_node`` name: ``base`` without a prefix, ``<prefix>_<base>`` with one."""
    prefix = prefix.strip("/")
    return f"{prefix}_{base}" if prefix else base


def client_id(base: str, sim_id: int | str | None = None) -> str:
    """A client id unique per connection: ``<base>_<sim_id>_<random>``.

    Two clients with the same id evict each other at the broker, so every connection gets its own
    random suffix.
    """
    middle = f"_{sim_id}" if sim_id is not None else ""
    return f"{base}{middle}_{uuid.uuid4().hex[:12]}"


# ----------------------------------------------------------------------------------- connection


class BrokerUnreachable(ConnectionError):
    """The broker could not be reached, refused the connection or did not acknowledge in time."""


@dataclass
class _Subscription:
    topic: str
    qos: int
    callback: MessageCallback
    worker: _Worker = field(repr=False)


class _Worker:
    """One daemon thread running queued jobs in order; exceptions are logged, never propagated."""

    _STOP = object()

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self, timeout: float = 5.0) -> None:
        """Let queued jobs finish, then end the thread (never joins itself)."""
        self._jobs.put(self._STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is self._STOP:
                return
            try:
                job()
            except Exception:
                logger.exception("MQTT callback failed in %s", self._thread.name)


class MqttConnection:
    """One MQTT client connection (paho-mqtt 2.x, MQTT 3.1.1, clean session, automatic reconnect).

    Thread-safe: every method may be called from any thread except paho's network thread (which
    never runs our callbacks anyway).

    Args:
        settings: broker address (``host``, ``port``) and credentials (``username``, ``password``;
            anonymous when empty); the prefix is not used here.
        client_id: the MQTT client id; use :func:`client_id` to make a unique one.
    """

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self.settings = settings
        self.client_id = client_id
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=paho.MQTTv311,
        )
        if settings.username:
            self._client.username_pw_set(settings.username, settings.password or None)
        self._client.reconnect_delay_set(_RECONNECT_MIN_DELAY, _RECONNECT_MAX_DELAY)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_subscribe = self._handle_subscribe
        self._client.on_unsubscribe = self._handle_unsubscribe
        self._lock = threading.RLock()
        self._subscriptions: dict[str, _Subscription] = {}
        self._connect_hooks: list[ConnectCallback] = []
        self._acks: dict[int, threading.Event] = {}
        self._connected = threading.Event()
        self._connack = threading.Event()
        self._connect_error: str | None = None
        self._started = False
        self._closed = False
        self._events = _Worker(f"mqtt-events-{client_id}")
        self.connect_count = 0

    # -- connection ------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """True while the broker connection is up (False while reconnecting and after close)."""
        return self._connected.is_set() and not self._closed

    def connect(self, timeout: float = 5.0) -> None:
        """Connect to the broker and start the network thread; return once the broker accepted.

        Later connection losses are repaired automatically. Calling it again while connected does
        nothing.

        Raises:
            BrokerUnreachable: the broker is not reachable or did not accept within ``timeout``.
        """
        with self._lock:
            if self._closed:
                raise BrokerUnreachable("the MQTT connection was closed")
            already_started = self._started
            if not already_started:
                self._client.connect_timeout = timeout
                try:
                    self._client.connect(self.settings.host, self.settings.port, keepalive=_KEEPALIVE)
                except (OSError, ValueError) as exc:
                    msg = f"MQTT broker {self.settings.address} is unreachable: {exc}"
                    raise BrokerUnreachable(msg) from exc
                self._started = True
                self._client.loop_start()
        if already_started:
            if self._connected.wait(timeout):
                return
            raise BrokerUnreachable(f"MQTT broker {self.settings.address} is not connected")
        # the broker's CONNACK (accepting or refusing) ends the wait early
        if not self._connack.wait(timeout) or not self._connected.wait(0.1):
            reason = self._connect_error or "no answer"
            self._stop_network()
            raise BrokerUnreachable(
                f"MQTT broker {self.settings.address} did not accept the connection: {reason}"
            )

    def on_connect(self, callback: ConnectCallback) -> None:
        """Run ``callback()`` after every later (re)connect, in the connection's event thread.

        The renewed subscriptions have been acknowledged by the broker (or 5 s passed) when it runs.
        """
        with self._lock:
            self._connect_hooks.append(callback)

    def close(self) -> None:
        """Disconnect and stop every thread of this connection. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subscriptions = list(self._subscriptions.values())
            self._subscriptions.clear()
        self._stop_network()
        # Workers finish the job in hand; a job blocked on someone else's lock is not waited for long.
        for sub in subscriptions:
            sub.worker.stop(timeout=1.0)
        self._events.stop(timeout=1.0)

    def _stop_network(self) -> None:
        with self._lock:
            started, self._started = self._started, False
        if started:
            try:
                self._client.disconnect()
            except Exception:  # pragma: no cover - paho raises nothing documented here
                logger.debug("MQTT disconnect failed", exc_info=True)
            self._client.loop_stop()
        self._connected.clear()

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(
        self, topic: str, callback: MessageCallback, qos: int = 1, wait: bool = True, timeout: float = 5.0
    ) -> None:
        """Subscribe ``callback(topic, payload)`` to the topic filter ``topic``.

        The callback runs in a worker thread owned by this subscription, one message at a time in
        arrival order. The subscription is renewed after every reconnect. Subscribing the same
        filter again replaces its callback.

        Args:
            wait: when connected, return only after the broker acknowledged the subscription.

        Raises:
            BrokerUnreachable: ``wait`` was requested and the broker did not acknowledge in time.
        """
        with self._lock:
            if self._closed:
                raise BrokerUnreachable("the MQTT connection was closed")
            old = self._subscriptions.pop(topic, None)
            worker = _Worker(f"mqtt-{topic}")
            self._subscriptions[topic] = _Subscription(topic, qos, callback, worker)
            ack = self._request(lambda: self._client.subscribe(topic, qos)) if self.is_connected else None
        if old is not None:
            old.worker.stop()
        if wait and ack is not None and not ack.wait(timeout):
            raise BrokerUnreachable(f"the broker did not acknowledge the subscription to {topic}")

    def unsubscribe(self, topic: str, wait: bool = False, timeout: float = 5.0) -> None:
        """Remove the subscription to ``topic`` (no error if there is none)."""
        with self._lock:
            sub = self._subscriptions.pop(topic, None)
            ack = self._request(lambda: self._client.unsubscribe(topic)) if self.is_connected else None
        if sub is not None:
            sub.worker.stop(timeout=0)
        if wait and ack is not None and not ack.wait(timeout):
            logger.warning("the broker did not acknowledge the unsubscription from %s", topic)

    def _request(self, send: Callable[[], tuple[MQTTErrorCode, int | None]]) -> threading.Event | None:
        """Send a subscribe or unsubscribe and return an event set by its acknowledgement."""
        rc, mid = send()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            return None
        event = threading.Event()
        self._acks[mid] = event
        return event

    # -- publishing ------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes | str | dict[str, Any] | list[Any] | None,
        qos: int = 0,
        retain: bool = False,
        wait: bool = False,
        timeout: float = 5.0,
    ) -> bool:
        """Publish a message; a dict or list is sent as JSON.

        Without ``wait`` a message that cannot be sent is logged, not raised (a QoS 1 message
        published while reconnecting is queued by paho and sent after the reconnect).

        Args:
            wait: return only after the broker acknowledged (QoS 1 and 2) or the message was
                written to the socket (QoS 0).

        Returns:
            True if the message was sent or queued.

        Raises:
            BrokerUnreachable: ``wait`` was requested and the message was not acknowledged in time.
        """
        if isinstance(payload, dict | list):
            payload = json.dumps(payload)
        if self._closed:
            if wait:
                raise BrokerUnreachable("the MQTT connection was closed")
            logger.warning("not published on closed MQTT connection: %s", topic)
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if not wait:
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                return True
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                # QoS 1 and 2 messages stay queued and go out after the reconnect; QoS 0 ones are lost
                logger.debug("MQTT publish on %s while disconnected (QoS %d)", topic, qos)
                return qos > 0
            logger.warning("MQTT publish on %s failed: %s", topic, paho.error_string(info.rc))
            return False
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise BrokerUnreachable(f"MQTT publish on {topic} failed: {exc}") from exc
        if not info.is_published():
            raise BrokerUnreachable(f"the broker did not acknowledge the message on {topic} in time")
        return True

    def clear_retained(self, topic: str, wait: bool = True, timeout: float = 5.0) -> bool:
        """Clear the retained message of ``topic`` (an empty retained payload, QoS 1).

        Raises:
            BrokerUnreachable: ``wait`` was requested and the broker did not acknowledge in time.
        """
        return self.publish(topic, b"", qos=1, retain=True, wait=wait, timeout=timeout)

    # -- paho callbacks (network thread: never block here) ---------------------------------

    def _handle_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._connect_error = str(reason)
            logger.warning("MQTT broker %s refused the connection: %s", self.settings.address, reason)
            self._connack.set()
            return
        with self._lock:
            topics = [(sub.topic, sub.qos) for sub in self._subscriptions.values()]
            ack = None
            if topics:
                ack = self._request(lambda: client.subscribe(topics))
                if ack is None:
                    logger.warning("MQTT re-subscription of %s failed", self.client_id)
            hooks = list(self._connect_hooks)
            reconnect = self.connect_count > 0
            self.connect_count += 1
            self._connected.set()
        self._connack.set()
        if reconnect:
            logger.info("MQTT client %s reconnected to %s", self.client_id, self.settings.address)

        def run_hooks() -> None:
            # hooks may publish and expect answers: let the broker confirm the subscriptions first
            if ack is not None and not ack.wait(_RESUBSCRIBE_TIMEOUT):
                logger.warning("MQTT re-subscription of %s was not acknowledged", self.client_id)
            for hook in hooks:
                try:
                    hook()
                except Exception:
                    logger.exception("MQTT on_connect hook failed")

        if hooks:
            self._events.submit(run_hooks)

    def _handle_disconnect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._connected.clear()
        if not self._closed:
            logger.warning("MQTT client %s lost the broker (%s); reconnecting", self.client_id, reason)

    def _handle_subscribe(self, client: paho.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        self._ack(mid)

    def _handle_unsubscribe(self, client: paho.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        self._ack(mid)

    def _ack(self, mid: int) -> None:
        with self._lock:
            event = self._acks.pop(mid, None)
        if event is not None:
            event.set()

    def _handle_message(self, client: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        topic = message.topic
        payload = bytes(message.payload)
        with self._lock:
            targets = [s for s in self._subscriptions.values() if paho.topic_matches_sub(s.topic, topic)]
        for sub in targets:
            sub.worker.submit(functools.partial(sub.callback, topic, payload))


def clear_retained_matching(connection: MqttConnection, topic_filter: str, settle: float = 0.5) -> list[str]:
    """Clear every retained message on topics matching ``topic_filter``; return those topics.

    The backend calls it at start-up with ``lifecycle_topic(prefix, "+")`` to drop retained init
    messages that a crash left behind (a later simulation with the same id would receive them). A
    new subscription receives the retained messages at once; messages arriving within ``settle``
    seconds are taken as retained and cleared, so call it before simulations of this prefix start.

    Raises:
        BrokerUnreachable: the broker did not acknowledge the subscription or a clear.
    """
    seen: dict[str, None] = {}
    lock = threading.Lock()

    def record(topic: str, payload: bytes) -> None:
        if payload:
            with lock:
                seen[topic] = None

    connection.subscribe(topic_filter, record, qos=1, wait=True)
    try:
        threading.Event().wait(settle)
    finally:
        connection.unsubscribe(topic_filter, wait=True)
    with lock:
        topics = list(seen)
    for topic in topics:
        connection.clear_retained(topic, wait=True)
    if topics:
        logger.info("Cleared %d stale retained message(s) on %s", len(topics), topic_filter)
    return topics
