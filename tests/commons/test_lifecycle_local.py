"""The lifecycle state machine on its own, without a broker: transitions, callbacks, errors, locking."""

from __future__ import annotations

import json
import threading

import pytest

from hbp_nrp_commons.lifecycle import (
    FINAL_STATES,
    STATES,
    TRIGGERS,
    InvalidTransitionError,
    LifecycleBusyError,
    TransitionEvent,
)
from tests.helpers.waiting import HANG, ContendedLock, join, wait_event, wait_until

from .helpers import Recorder, backend_like, server_like

VALID = {
    ("created", "initialized"): ("paused", "initialize", "before"),
    ("paused", "started"): ("started", "start", "before"),
    ("started", "paused"): ("paused", "pause", "before"),
    ("started", "completed"): ("completed", None, None),
    ("created", "stopped"): ("stopped", "stop", "before"),
    ("paused", "stopped"): ("stopped", "stop", "before"),
    ("started", "stopped"): ("stopped", "stop", "before"),
    ("completed", "stopped"): ("stopped", "stop", "before"),
    ("paused", "failed"): ("failed", "fail", "after"),
    ("started", "failed"): ("failed", "fail", "after"),
    ("completed", "failed"): ("failed", "fail", "after"),
    ("created", "failed"): ("failed", "stop", "before"),
}
NO_OPS = {
    ("paused", "initialized"),
    ("paused", "paused"),
    ("started", "started"),
    ("completed", "completed"),
    ("stopped", "stopped"),
    ("failed", "failed"),
}


def in_state(state: str, **kwargs: object) -> Recorder:
    lifecycle = backend_like(1, None, **kwargs)
    lifecycle.force_state(state)
    return lifecycle


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_transition_table(state: str, trigger: str) -> None:
    lifecycle = in_state(state)
    if (state, trigger) in VALID:
        target, callback, timing = VALID[(state, trigger)]
        assert lifecycle.accept_command(trigger) is True
        assert lifecycle.state == target
        if callback is None:
            assert lifecycle.calls == []
        else:
            seen = state if timing == "before" else target
            assert lifecycle.calls == [(callback, trigger, state, target, seen, False)]
        assert lifecycle.changes == [(state, target, trigger)]
        assert lifecycle.done_event.is_set() == (target in FINAL_STATES)
    elif (state, trigger) in NO_OPS:
        assert lifecycle.accept_command(trigger) is False
        assert (lifecycle.state, lifecycle.calls, lifecycle.changes) == (state, [], [])
    else:
        with pytest.raises(InvalidTransitionError) as info:
            lifecycle.accept_command(trigger)
        assert (info.value.current, info.value.requested) == (state, trigger)
        assert info.value.allowed == lifecycle.allowed_targets(state)
        assert (lifecycle.state, lifecycle.calls, lifecycle.changes) == (state, [], [])
        assert not lifecycle.done_event.is_set()


def test_initialized_runs_initialize_with_event_data() -> None:
    lifecycle = backend_like(1, None)
    assert lifecycle.initialized(token="abc") is True
    assert lifecycle.state == "paused"
    (event,) = lifecycle.events
    assert event == TransitionEvent("initialized", "created", "paused", False, {"token": "abc"})


def test_started_and_paused_are_invalid_from_created_and_fail_nothing() -> None:
    lifecycle = backend_like(1, None)
    for trigger in ("started", "paused"):
        with pytest.raises(InvalidTransitionError):
            lifecycle.accept_command(trigger)
    assert lifecycle.state == "created"
    assert lifecycle.calls == [] and not lifecycle.done_event.is_set()


def test_unknown_trigger_is_invalid_without_failing() -> None:
    lifecycle = in_state("paused")
    with pytest.raises(InvalidTransitionError) as info:
        lifecycle.accept_command("initialize")
    assert isinstance(info.value, ValueError)
    assert info.value.allowed == ["started", "paused", "stopped"]
    assert lifecycle.state == "paused" and lifecycle.calls == []


def test_allowed_targets_in_rest_order() -> None:
    lifecycle = backend_like(1, None)
    assert lifecycle.allowed_targets() == ["stopped"]
    assert lifecycle.allowed_targets("paused") == ["started", "paused", "stopped"]
    assert lifecycle.allowed_targets("started") == ["paused", "started", "stopped"]
    assert lifecycle.allowed_targets("completed") == ["stopped"]
    assert lifecycle.allowed_targets("stopped") == [] and lifecycle.allowed_targets("failed") == []


def test_local_sequence_runs_callbacks_and_shuts_down_once() -> None:
    lifecycle = backend_like(1, None)
    for trigger in ("initialized", "started", "paused", "started", "stopped"):
        lifecycle.accept_command(trigger)
    assert lifecycle.names() == ["initialize", "start", "pause", "start", "stop"]
    assert lifecycle.state == "stopped" and lifecycle.is_final
    assert lifecycle.done_event.is_set()
    assert [e.target for e in lifecycle.shutdowns if e is not None] == ["stopped"]
    assert lifecycle.last_published == {
        "source_node": "nrp_backend",
        "source_state": "paused",
        "event": "started",
        "target_state": "started",
    }
    assert lifecycle.accept_command("stopped") is False
    assert len(lifecycle.shutdowns) == 1


def test_raising_initialize_leads_to_stop_and_shutdown() -> None:
    lifecycle = backend_like(1, None, raise_in={"initialize"})
    with pytest.raises(RuntimeError, match="initialize failed"):
        lifecycle.initialized()
    assert lifecycle.state == "failed"
    assert lifecycle.names() == ["initialize", "stop"]
    stop_event = lifecycle.events[1]
    assert (stop_event.name, stop_event.source, stop_event.target) == ("failed", "created", "failed")
    assert isinstance(stop_event.error, RuntimeError)
    assert lifecycle.done_event.is_set() and len(lifecycle.shutdowns) == 1


def test_raising_start_fires_failed_then_reraises() -> None:
    lifecycle = in_state("paused", raise_in={"start"})
    with pytest.raises(RuntimeError, match="start failed"):
        lifecycle.started()
    assert lifecycle.state == "failed"
    assert lifecycle.calls[-1] == ("fail", "failed", "paused", "failed", "failed", False)


def test_raising_fail_is_the_exception_raised() -> None:
    lifecycle = in_state("started", raise_in={"pause", "fail"})
    with pytest.raises(RuntimeError, match="fail failed") as info:
        lifecycle.paused()
    assert isinstance(info.value.__cause__, RuntimeError)
    assert lifecycle.state == "failed" and lifecycle.done_event.is_set()


def test_failed_from_created_ends_failed_even_if_stop_raises() -> None:
    lifecycle = backend_like(1, None, raise_in={"stop"})
    with pytest.raises(RuntimeError, match="stop failed"):
        lifecycle.failed()
    assert lifecycle.state == "failed" and lifecycle.done_event.is_set()


def test_force_state_has_no_side_effects() -> None:
    lifecycle = backend_like(1, None)
    lifecycle.force_state("started")
    lifecycle.force_state("failed")
    assert lifecycle.state == "failed"
    assert (lifecycle.calls, lifecycle.changes, lifecycle.shutdowns) == ([], [], [])
    with pytest.raises(ValueError):
        lifecycle.force_state("initialized")


def test_shutdown_error_is_kept_and_done_event_set() -> None:
    class Broken(Recorder):
        def shutdown(self, event: TransitionEvent | None = None) -> None:
            raise OSError("engine would not die")

    lifecycle = Broken(1, None, "nrp_simulation_server", "", frozenset(), False)
    lifecycle.accept_command("stopped")
    assert isinstance(lifecycle.shutdown_error, OSError)
    assert lifecycle.done_event.is_set()


def test_released_lock_lets_the_awaited_thread_finish() -> None:
    """The simserver pattern: ``stop`` joins the script thread, whose end fires ``completed``."""
    outcome: list[str] = []
    joined: list[bool] = []

    class Server(Recorder):
        def start(self, event: TransitionEvent | None = None) -> None:
            def script() -> None:
                stop_requested.wait(HANG)
                try:
                    self.completed()
                    outcome.append("completed")
                except LifecycleBusyError:
                    outcome.append("busy")

            self.thread = threading.Thread(target=script)
            self.thread.start()

        def stop(self, event: TransitionEvent) -> None:
            stop_requested.set()
            with self.released_lock():
                self.thread.join(HANG)
                joined.append(not self.thread.is_alive())

    stop_requested = threading.Event()
    lifecycle = Server(1, None, "nrp_simulation_server", "", frozenset(), False)
    lifecycle.initialized()
    lifecycle.started()
    lifecycle.stopped()
    assert joined == [True]  # the script thread ended while stop waited: no deadlock
    assert outcome == ["busy"]
    assert lifecycle.state == "stopped"


def test_callbacks_without_released_lock_block_other_threads() -> None:
    """The lock covers the whole trigger: another thread's trigger waits for it."""
    entered = threading.Event()
    release = threading.Event()

    class Slow(Recorder):
        def initialize(self, event: TransitionEvent) -> None:
            entered.set()
            release.wait(HANG)

    lifecycle = Slow(1, None, "nrp_backend", "", frozenset(), True)
    lock = ContendedLock(lifecycle._lock._lock)  # the re-entrant lock inside the lifecycle lock
    lifecycle._lock._lock = lock
    worker = threading.Thread(target=lifecycle.initialized)
    worker.start()
    wait_event(entered, message="initialize to run")
    results: list[bool] = []
    other = threading.Thread(target=lambda: results.append(lifecycle.stopped()))
    other.start()
    wait_event(lock.contended, message="the other trigger to wait for the lock")
    assert results == [] and lifecycle.state == "created"
    release.set()
    join(worker)
    join(other)
    assert results == [True] and lifecycle.state == "stopped"
    assert lifecycle.calls[-1][2] == "paused"  # the stop ran after the whole initialize transition


def message(source: str, event: str, target: str, node: str = "nrp_backend") -> bytes:
    return json.dumps(
        {"source_node": node, "source_state": source, "event": event, "target_state": target}
    ).encode()


def test_received_messages_run_callbacks_silently() -> None:
    lifecycle = server_like(1, None)
    lifecycle.handle_message(message("created", "initialized", "paused"))
    lifecycle.handle_message(message("paused", "started", "started"))
    assert lifecycle.state == "started"
    assert [(c[0], c[5]) for c in lifecycle.calls] == [("initialize", True), ("start", True)]
    assert lifecycle.last_published is None


def test_received_messages_ignored_when_own_empty_malformed_or_already_applied() -> None:
    lifecycle = server_like(1, None)
    for payload in (b"", b"{not json", b"[]", b'{"source_node": "x"}', message("created", "bogus", "paused")):
        lifecycle.handle_message(payload)
    lifecycle.handle_message(message("created", "initialized", "paused", node="nrp_simulation_server"))
    assert lifecycle.state == "created" and lifecycle.calls == []
    lifecycle.handle_message(message("created", "initialized", "paused"))
    lifecycle.handle_message(message("created", "initialized", "paused"))  # a retained copy again
    assert lifecycle.names() == ["initialize"]


def test_divergence_forces_the_source_state_first() -> None:
    lifecycle = server_like(1, None)
    lifecycle.handle_message(message("started", "paused", "paused"))
    assert lifecycle.state == "paused"
    assert lifecycle.calls == [("pause", "paused", "started", "paused", "started", True)]


def test_failure_applying_a_received_message_forces_target_and_fails() -> None:
    lifecycle = server_like(1, None, raise_in={"initialize"})
    lifecycle.handle_message(message("created", "initialized", "paused"))
    assert lifecycle.state == "failed"
    assert lifecycle.names() == ["initialize", "fail"]
    assert lifecycle.calls[-1][1:4] == ("failed", "paused", "failed")
    assert lifecycle.last_published == {
        "source_node": "nrp_simulation_server",
        "source_state": "paused",
        "event": "failed",
        "target_state": "failed",
    }
    assert lifecycle.done_event.is_set()


def test_final_lifecycle_ignores_received_messages() -> None:
    lifecycle = server_like(1, None)
    lifecycle.stopped()
    lifecycle.handle_message(message("created", "initialized", "paused"))
    assert lifecycle.state == "stopped" and lifecycle.names() == ["stop"]


def test_apply_peer_state_follows_completed_and_failed_silently() -> None:
    lifecycle = in_state("started")
    assert lifecycle.apply_peer_state("completed") is True
    assert lifecycle.state == "completed" and lifecycle.changes == [("started", "completed", "completed")]
    assert lifecycle.apply_peer_state("completed") is False
    assert lifecycle.apply_peer_state("failed") is True
    assert lifecycle.calls == [("fail", "failed", "completed", "failed", "failed", True)]
    assert lifecycle.done_event.is_set()
    assert lifecycle.apply_peer_state("started") is False  # final: nothing moves any more


def test_apply_peer_state_forces_unreachable_states() -> None:
    lifecycle = in_state("paused")
    assert lifecycle.apply_peer_state("completed") is True
    assert lifecycle.state == "completed" and lifecycle.calls == []


def test_received_messages_are_dropped_while_a_transition_waits_unlocked() -> None:
    waiting = threading.Event()
    proceed = threading.Event()

    class Server(Recorder):
        def stop(self, event: TransitionEvent) -> None:
            with self.released_lock():
                waiting.set()
                proceed.wait(HANG)

    lifecycle = Server(1, None, "nrp_simulation_server", "", frozenset(), False)
    lifecycle.force_state("started")
    stopper = threading.Thread(target=lifecycle.stopped)
    stopper.start()
    wait_event(waiting, message="stop to release the lock")
    lifecycle.handle_message(message("started", "paused", "paused"))
    with pytest.raises(LifecycleBusyError):
        lifecycle.force_state("paused")
    assert lifecycle.state == "started"
    proceed.set()
    join(stopper)
    assert lifecycle.state == "stopped"


def test_concurrent_commands_and_messages_keep_the_machine_consistent() -> None:
    """Threads hammering commands while messages arrive: only valid moves, no deadlock."""
    lifecycle = server_like(1, None)
    lifecycle.initialized()
    errors: list[BaseException] = []
    stop = threading.Event()
    rounds = [0]

    def commands(trigger: str) -> None:
        while not stop.is_set():
            try:
                lifecycle.accept_command(trigger)
            except InvalidTransitionError:
                pass
            except BaseException as exc:  # anything else is a bug
                errors.append(exc)

    def messages() -> None:
        while not stop.is_set():
            lifecycle.handle_message(message("paused", "started", "started"))
            lifecycle.handle_message(message("started", "paused", "paused"))
            rounds[0] += 1

    threads = [threading.Thread(target=commands, args=(t,)) for t in ("started", "paused", "started")]
    threads.append(threading.Thread(target=messages))
    for thread in threads:
        thread.start()
    # enough hammering that commands and messages met many times
    wait_until(lambda: rounds[0] >= 200 and len(lifecycle.changes) >= 20, message="200 rounds")
    stop.set()
    for thread in threads:
        join(thread)
    assert errors == []
    assert lifecycle.state in ("started", "paused")
    # every recorded transition starts where the previous one ended
    for (_, target, _), (source, _, _) in zip(lifecycle.changes, lifecycle.changes[1:], strict=False):
        assert source == target
    lifecycle.stopped()
    assert lifecycle.done_event.is_set()
