"""Where Simulation Servers run: the executors of the REST server.

An executor admits a launch (its capacity, 409 when nothing fits), starts a simulation's Simulation
Server (clone the experiment, spawn the process, report its exit to the simulation), stops it (stop
the process, merge its runtime report, upload its logs, remove its folder) and, at start-up,
settles what a previous run of the REST server left behind.

- ``local`` (:mod:`.local`): a child process of the REST server, as always; the default.
- ``ray`` (:mod:`.ray_executor`): a Ray actor on a node of a Ray cluster owns the process; the
  REST server reaches Ray through a bridge process (:mod:`.ray_bridge`), the node side is
  :mod:`.ray_node`.

Both start the process with :func:`.spawn.spawn_simserver`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable

    from hbp_nrp_backend.launch import LaunchRequest
    from hbp_nrp_backend.simulation import Simulation

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """What the REST server needs from the place its Simulation Servers run."""

    name: str

    def admit(self, token: str | None, request: LaunchRequest) -> Any:
        """Check that the launch fits; returns what :meth:`start` needs (released with :meth:`release`).

        Raises:
            ApiError: 400 for a bad resource request, 409 when nothing fits, 503 when unreachable.
        """
        ...

    def release(self, admission: Any) -> None:
        """The launch has started or failed: its admission no longer holds capacity."""
        ...

    def start(self, sim: Simulation, admission: Any) -> None:
        """Clone the experiment and start the Simulation Server; sets its folder, pid and node.

        Raises:
            ApiError or Exception: the start failed; the caller reports it as a failed launch.
        """
        ...

    def stop(self, sim: Simulation) -> None:
        """Stop the Simulation Server, merge its runtime report, upload its logs, remove its folder."""
        ...

    def read_logs(
        self, sim: Simulation, name: str | None, tail: int, offset: int
    ) -> list[dict[str, Any]] | None:
        """The running simulation's log files (see :func:`hbp_nrp_backend.live_logs.read_logs`).

        Raises:
            NoSuchLog: there is no log file ``name``.
        """
        ...

    def reconcile(self, leftovers: Iterable[Simulation]) -> None:
        """At start-up: stop what a previous run left running of these (already failed) simulations."""
        ...

    def start_service(self) -> None:
        """Start background work (connections, monitors)."""
        ...

    def close(self) -> None:
        """The REST server shuts down (after every simulation was stopped)."""
        ...
