"""The REST server's watchdog: it stops simulations nobody will stop.

:class:`Watchdog` checks every :data:`WATCHDOG_PERIOD` seconds for simulations idle in
``completed`` longer than ``NRP_COMPLETED_IDLE_STOP`` and those running longer than
``NRP_SIMULATION_MAX_LIFETIME``, and stops each from its own thread as the server's other stops
do (:meth:`WatchdogHost.stop_quietly`), once at a time per simulation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Protocol

from hbp_nrp_backend.config import BackendConfig
from hbp_nrp_backend.registry import FINAL_STATES
from hbp_nrp_backend.simulation import Simulation

WATCHDOG_PERIOD = 0.5


class WatchdogHost(Protocol):
    """What the watchdog needs from the manager."""

    @property
    def config(self) -> BackendConfig: ...

    def all(self) -> Iterable[Simulation]: ...

    def stop_quietly(self, sim: Simulation, reason: str) -> None: ...


class Watchdog:
    """Auto-stop of idle completed and over-lifetime simulations, in a daemon thread.

    Args:
        host: the manager whose simulations it watches, and which stops them.
        period: seconds between two checks.
    """

    def __init__(self, host: WatchdogHost, period: float = WATCHDOG_PERIOD) -> None:
        self._host = host
        self._period = period
        self._lock = threading.Lock()
        self._stopping: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="SimulationWatchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Start no more stops (the thread ends at its next check; :meth:`join` waits for it)."""
        self._stop.set()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop_ended(self, sim_id: int) -> None:
        """A stop of ``sim_id`` ended (whoever asked for it): the watchdog may stop it again."""
        with self._lock:
            self._stopping.discard(sim_id)

    def reason_to_stop(self, sim: Simulation, now: float) -> str | None:
        """Why ``sim`` should be stopped at monotonic time ``now``; ``None``: it may go on."""
        if sim.lifecycle is None or sim.state in FINAL_STATES:
            return None
        config = self._host.config
        reason = None
        if sim.completed_at is not None and sim.state == "completed":
            if now - sim.completed_at >= config.completed_idle_stop:
                reason = "idle after completion"
        if now - sim.started_at >= config.max_lifetime:
            reason = "maximum lifetime exceeded"
        return reason

    def _watch(self) -> None:
        """Stop simulations idle in ``completed`` too long, and those past their wall-clock limit."""
        while not self._stop.wait(self._period):
            now = time.monotonic()
            for sim in list(self._host.all()):
                reason = self.reason_to_stop(sim, now)
                if reason is None:
                    continue
                with self._lock:
                    if sim.id in self._stopping:
                        continue
                    self._stopping.add(sim.id)
                threading.Thread(
                    target=self._host.stop_quietly,
                    args=(sim, reason),
                    name=f"SimAutoStop-{sim.id}",
                    daemon=True,
                ).start()
