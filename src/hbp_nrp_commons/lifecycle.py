"""The simulation lifecycle state machine shared by the backend and the Simulation Server.

Both processes run one :class:`SimulationLifecycle` per simulation and keep them in step over the
MQTT topic ``[P/]nrp_simulation/<id>/lifecycle``: each side publishes the transitions it makes
itself and applies the ones the other side publishes.

States and transitions (one table, :data:`TRANSITIONS`)::

    trigger       from                                to         callback    timing
    initialized   created                             paused     initialize  before the state changes
    started       paused                              started    start       before
    paused        started                             paused     pause       before
    completed     started                             completed  -           -
    stopped       created, paused, started, completed stopped    stop        before
    failed        paused, started, completed          failed     fail        after the state changes
    failed        created                             failed     stop        before

A trigger fired in its own destination state (``stopped`` in ``stopped``...) is a silent no-op;
every other pair raises :class:`InvalidTransitionError` and changes nothing.

After every real transition: (1) the transition is published when it was not received over MQTT
and its destination is in ``propagated_destinations``, retained if and only if it leaves
``created``; (2) :meth:`SimulationLifecycle.on_state_changed` runs; (3) on reaching ``stopped`` or
``failed`` the MQTT side is shut down (unsubscribe, clear the retained topic on the backend,
disconnect), then, once the lifecycle lock is released, :meth:`SimulationLifecycle.shutdown` runs
with the final transition's event and :attr:`SimulationLifecycle.done_event` is set.

Locking: each lifecycle has one re-entrant lock, held for a whole trigger including its callbacks
and the hook. A callback that waits for another thread which itself fires triggers (the simserver's
``stop`` joining the script thread, whose end fires ``completed``) must wait inside
:meth:`SimulationLifecycle.released_lock`; while it waits, triggers from other threads are refused
with :class:`LifecycleBusyError` (a stop in progress wins) and received messages are dropped.
Received messages are applied in the connection's worker thread for the lifecycle topic, never in
paho's network thread, so a long ``initialize`` does not stall MQTT.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from transitions.extensions import LockedMachine

from hbp_nrp_commons.mqtt import (
    BACKEND_NODE,
    SIMSERVER_NODE,
    BrokerUnreachable,
    MqttConnection,
    lifecycle_topic,
    node_name,
)

logger = logging.getLogger(__name__)

STATES: tuple[str, ...] = ("created", "paused", "started", "completed", "stopped", "failed")
TRIGGERS: tuple[str, ...] = ("initialized", "started", "paused", "completed", "stopped", "failed")
FINAL_STATES: frozenset[str] = frozenset({"stopped", "failed"})
RUNNING_STATES: frozenset[str] = frozenset({"created", "paused", "started", "completed"})

#: The destination of each trigger; only ``initialized`` differs from its name.
TRIGGER_TARGETS: Mapping[str, str] = {t: "paused" if t == "initialized" else t for t in TRIGGERS}

#: The transition table: (trigger, sources, destination, callback, timing).
TRANSITIONS: tuple[tuple[str, tuple[str, ...], str, str | None, str | None], ...] = (
    ("initialized", ("created",), "paused", "initialize", "before"),
    ("started", ("paused",), "started", "start", "before"),
    ("paused", ("started",), "paused", "pause", "before"),
    ("completed", ("started",), "completed", None, None),
    ("stopped", ("created", "paused", "started", "completed"), "stopped", "stop", "before"),
    ("failed", ("paused", "started", "completed"), "failed", "fail", "after"),
    ("failed", ("created",), "failed", "stop", "before"),
)

#: Targets a REST client may request from each state, in the order error messages list them.
REST_TARGETS: Mapping[str, tuple[str, ...]] = {
    "created": ("stopped",),
    "paused": ("started", "paused", "stopped"),
    "started": ("paused", "started", "stopped"),
    "completed": ("stopped",),
    "stopped": (),
    "failed": (),
}

#: The transitions each side publishes (the backend drives pause and start; the simserver reports
#: the end of the script and failures).
BACKEND_PROPAGATED: frozenset[str] = frozenset({"paused", "started"})
SIMSERVER_PROPAGATED: frozenset[str] = frozenset({"completed", "failed"})

_MQTT_SHUTDOWN_TIMEOUT = 2.0


class InvalidTransitionError(ValueError):
    """A trigger that is unknown or not allowed in the current state; nothing changed.

    Attributes:
        current: the lifecycle state when the trigger was refused.
        requested: the trigger (or state) that was requested.
        allowed: the targets a REST client may request from ``current``.
    """

    def __init__(self, current: str, requested: str, allowed: list[str], message: str | None = None) -> None:
        self.current = current
        self.requested = requested
        self.allowed = allowed
        super().__init__(message or f"Invalid transition from {current!r} with {requested!r}")


class LifecycleBusyError(InvalidTransitionError):
    """Another thread is in the middle of a transition that waits outside the lock (a stop)."""


@dataclass(frozen=True)
class TransitionEvent:
    """What a lifecycle callback is told about the transition it runs in.

    Attributes:
        name: the trigger, e.g. ``initialized``.
        source: the state the transition leaves.
        target: the state the transition enters.
        remote: True when the transition was received over MQTT (it is then never published).
        data: keyword arguments given to :meth:`SimulationLifecycle.accept_command`.
        error: for a ``failed`` fired because a callback raised, that exception.
    """

    name: str
    source: str
    target: str
    remote: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


class _LifecycleLock:
    """A re-entrant lock that one thread can release completely for a while and take back."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owner: int | None = None
        self._depth = 0

    def __enter__(self) -> None:
        self._lock.acquire()
        self._owner = threading.get_ident()
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
        self._lock.release()

    def held(self) -> bool:
        return self._owner == threading.get_ident()

    def release_all(self) -> int:
        depth = self._depth
        self._depth = 0
        self._owner = None
        for _ in range(depth):
            self._lock.release()
        return depth

    def restore(self, depth: int) -> None:
        for _ in range(depth):
            self._lock.acquire()
        self._owner = threading.get_ident()
        self._depth = depth


class _Model:
    """The object transitions drives; kept apart so its generated methods do not clutter subclasses."""

    state: str


class SimulationLifecycle:
    """One simulation's lifecycle, synchronised with its peer over MQTT.

    Subclasses override the callbacks :meth:`initialize`, :meth:`start`, :meth:`pause`,
    :meth:`stop`, :meth:`fail`, :meth:`shutdown` and the hooks :meth:`on_state_changed` and
    :meth:`on_reconnect`; each callback receives a :class:`TransitionEvent`.

    Args:
        sim_id: the simulation id.
        mqtt: the broker connection, or None for a purely local lifecycle (unit tests).
        node_base: ``nrp_backend`` or ``nrp_simulation_server``; the prefix is added to it.
        prefix: the MQTT topic prefix (``NRP_MQTT_PREFIX``), empty for none.
        propagated_destinations: destinations whose local transitions are published
            (:data:`BACKEND_PROPAGATED`, :data:`SIMSERVER_PROPAGATED`).
        clear_topic_on_connect: the backend's role: clear the retained lifecycle topic in
            :meth:`start` (waiting for the broker's acknowledgement) and at shutdown.
        owns_connection: close ``mqtt`` at shutdown (default); pass False when the connection is
            shared with something that outlives the lifecycle.
    """

    def __init__(
        self,
        sim_id: int,
        mqtt: MqttConnection | None,
        node_base: str,
        prefix: str,
        propagated_destinations: frozenset[str],
        clear_topic_on_connect: bool,
        *,
        owns_connection: bool = True,
    ) -> None:
        self.sim_id = sim_id
        self.prefix = prefix
        self.node = node_name(prefix, node_base)
        self.topic = lifecycle_topic(prefix, sim_id)
        self.mqtt = mqtt
        self.propagated_destinations = frozenset(propagated_destinations)
        self.clear_topic_on_connect = clear_topic_on_connect
        self.owns_connection = owns_connection
        self.done_event = threading.Event()
        #: The last lifecycle message this side published (a dict), for :meth:`republish_last`.
        self.last_published: dict[str, str] | None = None
        #: An exception raised by :meth:`shutdown` at the final state (the simserver's exit code 2).
        self.shutdown_error: BaseException | None = None
        self._lock = _LifecycleLock()
        self._guard = threading.Lock()  # protects the shutdown flags below
        self._suspended_by: int | None = None
        self._final_event: TransitionEvent | None = None
        self._final_thread: int | None = None  # the thread that reached the final state runs shutdown
        self._final_shutdown_started = False
        self._mqtt_down = False
        self._subscribed = False
        self._reconnect_hooked = False
        self._model = _Model()
        self._machine = LockedMachine(
            model=self._model,
            states=list(STATES),
            initial="created",
            transitions=[self._transition_spec(*row) for row in TRANSITIONS],
            auto_transitions=False,
            send_event=True,
            machine_context=[self._lock],
            # after every trigger, whether its callbacks raised or not: publish, on_state_changed,
            # final shutdown (transitions runs it before an exception propagates)
            finalize_event=self._finalize_event,
        )

    # -- public state ----------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The current state name (read without the lock)."""
        return self._model.state

    @property
    def is_final(self) -> bool:
        """True once the lifecycle is ``stopped`` or ``failed``."""
        return self.state in FINAL_STATES

    def allowed_targets(self, state: str | None = None) -> list[str]:
        """The states a REST client may request from ``state`` (default: the current state)."""
        return list(REST_TARGETS[state if state is not None else self.state])

    # -- MQTT side -------------------------------------------------------------------------

    def connect(self, timeout: float = 5.0) -> None:
        """Connect (if needed), clear the retained topic (backend role) and subscribe to it; once.

        Also reachable as ``start()`` without an event while a subclass does not override
        :meth:`start` (the ``started`` callback shares that name).

        Raises:
            BrokerUnreachable: the broker is unreachable or did not acknowledge in time.
        """
        if self.mqtt is None or self._subscribed or self._mqtt_down:
            return
        if not self.mqtt.is_connected:
            self.mqtt.connect(timeout)
        if self.clear_topic_on_connect:
            self.mqtt.clear_retained(self.topic, wait=True, timeout=timeout)
        if not self._reconnect_hooked:
            self.mqtt.on_connect(self._handle_reconnect)
            self._reconnect_hooked = True
        self.mqtt.subscribe(self.topic, self._handle_lifecycle_message, qos=1, wait=True, timeout=timeout)
        self._subscribed = True

    def clear_retained(self, timeout: float = _MQTT_SHUTDOWN_TIMEOUT) -> bool:
        """Clear the retained init message (the simserver calls it once it consumed the message).

        Returns:
            True if the broker acknowledged; failures are logged, not raised.
        """
        if self.mqtt is None or self._mqtt_down:
            return False
        try:
            return self.mqtt.clear_retained(self.topic, wait=True, timeout=timeout)
        except BrokerUnreachable as exc:
            logger.warning("Could not clear the retained lifecycle message of %s: %s", self.topic, exc)
            return False

    def republish_last(self) -> bool:
        """Publish :attr:`last_published` again, so that a peer that missed it during a reconnect catches up.

        Returns:
            True if there was a message and it was sent or queued.
        """
        with self._locked():
            if self.last_published is None or self.is_final or self._suspended_by is not None:
                return False
            return self._send(self.last_published)

    def shutdown(self, event: TransitionEvent | None = None) -> None:
        """Release the MQTT side: unsubscribe, clear the retained topic (backend role), disconnect.

        Idempotent. The lifecycle calls it once with the final transition's event after reaching
        ``stopped`` or ``failed``, outside the lifecycle lock, and sets :attr:`done_event` after it;
        the MQTT side is already shut down then. Subclasses override it to free their own resources
        and call ``super().shutdown(event)``. Calling it directly (e.g. at process exit) only
        releases the MQTT side.
        """
        self._shutdown_mqtt()

    # -- commands --------------------------------------------------------------------------

    def accept_command(self, event: str, **data: Any) -> bool:
        """Fire ``event`` locally (REST command, script end, signal).

        Returns:
            True if a transition ran, False for a silent no-op (the event's own destination state).

        Raises:
            InvalidTransitionError: unknown trigger or not allowed from the current state; nothing
                changed and nothing failed. :class:`LifecycleBusyError` while another thread's
                transition waits in :meth:`released_lock`.
            Exception: a callback raised; a failing callback fails the simulation, so the lifecycle
                fired ``failed`` first and re-raises the callback's exception (or the one ``failed``
                raised).
        """
        with self._locked():
            self._refuse_if_busy(event)
            try:
                return self._apply(event, remote=False, data=data)
            except InvalidTransitionError:
                raise
            except Exception as exc:
                if self.is_final:
                    raise
                logger.exception(
                    "Transition %r from %r failed (simulation %s)", event, self.state, self.sim_id
                )
                try:
                    self._apply("failed", remote=False, data={}, error=exc)
                except Exception as second:
                    raise second from exc
                raise

    def force_state(self, state: str) -> None:
        """Set the state without callbacks, publication or shutdown (divergence repair).

        Raises:
            ValueError: ``state`` is not one of :data:`STATES`.
            LifecycleBusyError: another thread's transition waits in :meth:`released_lock`.
        """
        if state not in STATES:
            raise ValueError(f"unknown lifecycle state {state!r}")
        with self._locked():
            self._refuse_if_busy(state)
            self._force(state)

    def apply_peer_state(self, state: str) -> bool:
        """Follow a state the peer reports outside the lifecycle topic (in its status message).

        The backend calls it when the simserver's status says ``completed`` or ``failed`` while the
        backend still runs: the transition is applied as if received (callbacks run, nothing is
        published). A state not reachable by a transition from the current one is forced.

        Returns:
            True if the state changed.
        """
        if state not in STATES:
            raise ValueError(f"unknown lifecycle state {state!r}")
        with self._locked():
            if self.is_final or self._suspended_by is not None or self.state == state:
                return False
            trigger = "initialized" if state == "paused" and self.state == "created" else state
            if not self._machine.get_transitions(trigger=trigger, source=self.state):
                logger.warning("Simulation %s follows its peer from %r to %r", self.sim_id, self.state, state)
                self._force(state)
                return True
            try:
                self._apply(trigger, remote=True, data={})
            except Exception as exc:
                logger.exception("Following the peer to %r failed (simulation %s)", state, self.sim_id)
                if not self.is_final:
                    self._force(state)
                    try:
                        self._apply("failed", remote=False, data={}, error=exc)
                    except Exception:
                        logger.exception("Failing simulation %s failed", self.sim_id)
            return True

    @contextmanager
    def released_lock(self) -> Iterator[None]:
        """Release the lifecycle lock completely while waiting for another thread, then retake it.

        Use it inside a callback that waits for a thread that may fire triggers itself::

            def stop(self, event):
                self._stop_requested.set()
                with self.released_lock():
                    self._script_thread.join(20)

        While the lock is released, triggers from other threads raise :class:`LifecycleBusyError`
        and received messages are dropped, so the waiting transition still ends as planned.
        Outside a callback it does nothing.
        """
        if not self._lock.held():
            yield
            return
        self._suspended_by = threading.get_ident()
        depth = self._lock.release_all()
        try:
            yield
        finally:
            self._lock.restore(depth)
            self._suspended_by = None

    # Trigger methods in the style of transitions' models: ``lifecycle.stopped()`` is
    # ``lifecycle.accept_command("stopped")``.

    def initialized(self, **data: Any) -> bool:
        """Fire ``initialized`` (see :meth:`accept_command`)."""
        return self.accept_command("initialized", **data)

    def started(self, **data: Any) -> bool:
        """Fire ``started`` (see :meth:`accept_command`)."""
        return self.accept_command("started", **data)

    def paused(self, **data: Any) -> bool:
        """Fire ``paused`` (see :meth:`accept_command`)."""
        return self.accept_command("paused", **data)

    def completed(self, **data: Any) -> bool:
        """Fire ``completed`` (see :meth:`accept_command`)."""
        return self.accept_command("completed", **data)

    def stopped(self, **data: Any) -> bool:
        """Fire ``stopped`` (see :meth:`accept_command`)."""
        return self.accept_command("stopped", **data)

    def failed(self, **data: Any) -> bool:
        """Fire ``failed`` (see :meth:`accept_command`)."""
        return self.accept_command("failed", **data)

    # -- callbacks for subclasses ----------------------------------------------------------

    def initialize(self, event: TransitionEvent) -> None:
        """``initialized``: created -> paused, before the state changes."""

    def start(self, event: TransitionEvent | None = None) -> None:
        """``started``: paused -> started, before the state changes.

        Called without an event it is :meth:`connect` (so ``lifecycle.start()`` starts the MQTT
        side); a subclass overriding the callback calls :meth:`connect` instead.
        """
        if event is None:
            self.connect()

    def pause(self, event: TransitionEvent) -> None:
        """``paused``: started -> paused, before the state changes."""

    def stop(self, event: TransitionEvent) -> None:
        """``stopped`` from any running state, and ``failed`` from ``created``; before the change."""

    def fail(self, event: TransitionEvent) -> None:
        """``failed`` from paused, started or completed, after the state changed."""

    def on_state_changed(self, source: str, target: str, event: str) -> None:
        """Runs after every real transition (local or received), under the lock; not for force_state.

        Exceptions are logged and ignored. The simserver publishes its status here.
        """

    def on_reconnect(self) -> None:
        """Runs after the MQTT connection came back (in the connection's event thread).

        The backend re-publishes its init message here while the simserver is not ready
        (:meth:`republish_last`); the simserver publishes a status.
        """

    # -- internals -------------------------------------------------------------------------

    def _transition_spec(
        self, trigger: str, sources: tuple[str, ...], dest: str, callback: str | None, timing: str | None
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {"trigger": trigger, "source": list(sources), "dest": dest}
        if callback is not None and timing is not None:
            spec[timing] = self._callback(callback)
        return spec

    def _callback(self, name: str) -> Any:
        def run(event_data: Any) -> None:
            kwargs = dict(event_data.kwargs)
            remote = bool(kwargs.pop("_remote", False))
            error = kwargs.pop("_error", None)
            event = TransitionEvent(
                name=event_data.event.name,
                source=event_data.transition.source,
                target=event_data.transition.dest,
                remote=remote,
                data=kwargs,
                error=error,
            )
            getattr(self, name)(event)

        run.__name__ = f"lifecycle_{name}"
        return run

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            with self._lock:
                yield
        finally:
            if not self._lock.held():
                self._finish_final_shutdown()

    def _refuse_if_busy(self, requested: str) -> None:
        owner = self._suspended_by
        if owner is not None and owner != threading.get_ident():
            raise LifecycleBusyError(
                self.state, requested, [], f"A transition of simulation {self.sim_id} is in progress"
            )

    def _force(self, state: str) -> None:
        if state != self.state:
            logger.info("Simulation %s lifecycle forced from %r to %r", self.sim_id, self.state, state)
            self._machine.set_state(state, model=self._model)

    def _apply(
        self, event: str, *, remote: bool, data: Mapping[str, Any], error: BaseException | None = None
    ) -> bool:
        """Run one trigger; the lock is held. False for a silent no-op."""
        source = self.state
        target = TRIGGER_TARGETS.get(event)
        if target is None:
            allowed = self.allowed_targets(source)
            raise InvalidTransitionError(source, event, allowed, f"Unknown trigger {event!r}")
        if source == target:
            return False
        if not self._machine.get_transitions(trigger=event, source=source):
            raise InvalidTransitionError(source, event, self.allowed_targets(source))
        kwargs = {**data, "_remote": remote, "_error": error}
        self._machine.events[event].trigger(self._model, **kwargs)  # then _finalize_event
        return True

    def _finalize_event(self, event_data: Any) -> None:
        """transitions' ``finalize_event`` hook: runs after every trigger, also when a callback raised.

        A transition that changed the state (even if a later callback raised) gets its
        :meth:`_after_transition`; a ``failed`` whose ``stop`` raised from ``created`` fails all
        the same.
        """
        transition = event_data.transition
        if transition is None:  # no transition ran (refused before the trigger)
            return
        name = event_data.event.name
        source = transition.source
        if event_data.error is not None and self.state == source and name == "failed":
            # ``stop`` raised while failing from created: the lifecycle fails all the same.
            self._force("failed")
        if self.state == source:
            return
        kwargs = dict(event_data.kwargs)
        remote = bool(kwargs.pop("_remote", False))
        error = kwargs.pop("_error", None)
        self._after_transition(TransitionEvent(name, source, transition.dest, remote, kwargs, error))

    def _after_transition(self, event: TransitionEvent) -> None:
        logger.info(
            "Simulation %s lifecycle (%s): %s -> %s (%s%s)",
            self.sim_id,
            self.node,
            event.source,
            event.target,
            event.name,
            ", received" if event.remote else "",
        )
        if not event.remote and event.target in self.propagated_destinations:
            self._publish(event.source, event.name, event.target)
        try:
            self.on_state_changed(event.source, event.target, event.name)
        except Exception:
            logger.exception("on_state_changed failed for simulation %s", self.sim_id)
        if event.target in FINAL_STATES and event.source not in FINAL_STATES:
            self._shutdown_mqtt()
            with self._guard:
                if self._final_event is None:
                    self._final_event = event
                    self._final_thread = threading.get_ident()

    def _publish(self, source: str, event: str, target: str) -> None:
        payload = {"source_node": self.node, "source_state": source, "event": event, "target_state": target}
        self.last_published = payload
        self._send(payload)

    def _send(self, payload: dict[str, str]) -> bool:
        if self.mqtt is None or self._mqtt_down:
            return False
        # The connection closes right after a final transition: make sure the broker has that message.
        final = payload["target_state"] in FINAL_STATES
        try:
            return self.mqtt.publish(
                self.topic,
                payload,
                qos=1,
                retain=payload["source_state"] == "created",
                wait=final,
                timeout=_MQTT_SHUTDOWN_TIMEOUT,
            )
        except BrokerUnreachable as exc:
            logger.warning("The lifecycle message %s may be lost: %s", payload, exc)
            return False
        except Exception:
            logger.exception("Publishing the lifecycle message %s failed", payload)
            return False

    def _shutdown_mqtt(self) -> None:
        with self._guard:
            if self._mqtt_down:
                return
            self._mqtt_down = True
        if self.mqtt is None:
            return
        try:
            if self._subscribed:
                self.mqtt.unsubscribe(self.topic)
            if self.clear_topic_on_connect:
                self.mqtt.clear_retained(self.topic, wait=True, timeout=_MQTT_SHUTDOWN_TIMEOUT)
        except BrokerUnreachable as exc:
            logger.warning("Lifecycle MQTT shutdown of simulation %s: %s", self.sim_id, exc)
        except Exception:
            logger.exception("Lifecycle MQTT shutdown of simulation %s failed", self.sim_id)
        finally:
            if self.owns_connection:
                self.mqtt.close()

    def _finish_final_shutdown(self) -> None:
        with self._guard:
            event = self._final_event
            if event is None or self._final_shutdown_started or self._final_thread != threading.get_ident():
                return
            self._final_shutdown_started = True
        try:
            self.shutdown(event)
        except Exception as exc:
            self.shutdown_error = exc
            logger.exception("Shutdown of simulation %s failed", self.sim_id)
        finally:
            self.done_event.set()

    def _handle_reconnect(self) -> None:
        if not self._mqtt_down:
            self.on_reconnect()

    def _handle_lifecycle_message(self, topic: str, payload: bytes) -> None:
        self.handle_message(payload)

    def handle_message(self, payload: bytes | str) -> None:
        """Apply one lifecycle message received from the peer (this side's own messages are ignored).

        Called in the lifecycle topic's worker thread; tests may call it directly.
        """
        if not payload:
            return
        try:
            message = json.loads(payload)
            source_node = message["source_node"]
            source = message["source_state"]
            event = message["event"]
            target = message["target_state"]
        except (ValueError, TypeError, KeyError):
            logger.warning("Ignoring a malformed lifecycle message on %s: %r", self.topic, payload)
            return
        if source_node == self.node:
            return
        # no transition leaves a final state: forcing one would skip the final shutdown
        if source not in RUNNING_STATES or target not in STATES or TRIGGER_TARGETS.get(event) != target:
            logger.warning("Ignoring an invalid lifecycle message on %s: %r", self.topic, payload)
            return
        with self._locked():
            if self.is_final or self._suspended_by is not None:
                logger.info(
                    "Simulation %s ignores %s -> %s: lifecycle busy or ended", self.sim_id, source, target
                )
                return
            if self.state == target:
                return  # already there (a retained message seen again, a duplicate)
            if self.state == "completed" and target in ("paused", "started"):
                # The peer paused or resumed before our ``completed`` reached it; it follows us to
                # ``completed``. Forcing its source state would resume a script that has ended.
                logger.info(
                    "Simulation %s ignores %s -> %s: the script has completed", self.sim_id, source, target
                )
                return
            if self.state != source:
                logger.warning("The local simulation lifecycle and the remote version have diverged.")
                self._force(source)
            try:
                self._apply(event, remote=True, data={})
            except Exception as exc:
                logger.exception("Applying the remote transition %s -> %s failed", source, target)
                if self.is_final:
                    return
                if target not in FINAL_STATES:  # ``failed`` cannot leave a forced ``stopped``
                    self._force(target)
                try:
                    self._apply("failed", remote=False, data={}, error=exc)
                except Exception:
                    logger.exception("Failing simulation %s after a remote transition failed", self.sim_id)


__all__ = [
    "BACKEND_NODE",
    "BACKEND_PROPAGATED",
    "FINAL_STATES",
    "REST_TARGETS",
    "RUNNING_STATES",
    "SIMSERVER_NODE",
    "SIMSERVER_PROPAGATED",
    "STATES",
    "TRANSITIONS",
    "TRIGGERS",
    "TRIGGER_TARGETS",
    "InvalidTransitionError",
    "LifecycleBusyError",
    "SimulationLifecycle",
    "TransitionEvent",
]
