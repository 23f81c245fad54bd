"""Waiting for events in tests, with deadlines that only a hang reaches.

A test never sleeps for a fixed time in place of an event: it waits for the event itself (a state,
a message, a file, a thread ending) with :func:`wait_until` or a :class:`threading.Event`. The
deadlines are generous (:data:`HANG`), so that a slow, busy machine makes a test slower, never red;
they only end a test that would otherwise hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: seconds after which a wait counts as a hang.
HANG = 60.0
#: seconds between two polls of a condition.
POLL = 0.01


def wait_until(
    predicate: Callable[[], T], timeout: float = HANG, message: str = "condition", interval: float = POLL
) -> T:
    """Poll ``predicate`` until it returns a true value, and return that value.

    Mind values that are false though present: a ``requests.Response`` with an error status is
    false, so wait for ``response.status_code == 401``, not for the response.

    Raises:
        AssertionError: ``timeout`` seconds passed first; the message names ``message``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(interval)  # sleep-ok: the poll interval of this wait


def wait_event(event: threading.Event, timeout: float = HANG, message: str = "event") -> None:
    """Wait for ``event`` to be set; fail the test (naming ``message``) if it never is."""
    if not event.wait(timeout):
        raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")


def join(thread: threading.Thread, timeout: float = HANG) -> None:
    """Join ``thread``; fail the test if it is still alive after ``timeout`` seconds."""
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"thread {thread.name} still runs after {timeout:g} s")


class WatchedEvent(threading.Event):
    """A :class:`threading.Event` that tells when somebody blocks in :meth:`wait` while it is clear.

    ``waiting`` is set once a thread is about to block on the cleared event: the test then knows the
    thread reached that wait, without sleeping.
    """

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        if not self.is_set():
            self.waiting.set()
        return super().wait(timeout)


class ContendedLock:
    """Wraps a lock (``Lock`` or ``RLock``) and tells when a thread has to wait for it.

    ``contended`` is set, and ``contentions`` counted, each time an ``acquire`` finds the lock held
    by another thread: the test then knows that thread reached the lock, without sleeping.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.contended = threading.Event()
        self.contentions = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self.inner.acquire(blocking=False):
            return True
        if not blocking:
            return False
        self.contentions += 1
        self.contended.set()
        return self.inner.acquire(True, timeout)

    def release(self) -> None:
        self.inner.release()

    def __enter__(self) -> ContendedLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
