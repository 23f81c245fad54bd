"""The backend's side of the simulation lifecycle: the callbacks it runs on each transition.

:class:`BackendSimulationLifecycle` binds the shared state machine to one
:class:`~hbp_nrp_backend.simulation.Simulation`: ``initialize`` clones and spawns, ``stop`` and
``fail`` terminate, upload the logs and delete the directory. It publishes only its transitions
to ``paused`` and ``started``; stop and failure reach the simserver through process signals. A
``completed``/``failed`` seen in a simserver status is followed with the shared
``SimulationLifecycle.apply_peer_state``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hbp_nrp_commons.lifecycle import (
    BACKEND_NODE,
    BACKEND_PROPAGATED,
    FINAL_STATES,
    InvalidTransitionError,
    LifecycleBusyError,
    SimulationLifecycle,
    TransitionEvent,
)
from hbp_nrp_commons.mqtt import MqttConnection

if TYPE_CHECKING:
    from hbp_nrp_backend.simulation import Simulation

__all__ = ["BackendSimulationLifecycle", "InvalidTransitionError", "LifecycleBusyError"]


class BackendSimulationLifecycle(SimulationLifecycle):
    """The REST server's lifecycle of one simulation.

    Args:
        simulation: the simulation whose work the callbacks do.
        connection: its broker connection (owned: closed when the lifecycle shuts down).
        prefix: the MQTT topic prefix.
    """

    def __init__(self, simulation: Simulation, connection: MqttConnection, prefix: str) -> None:
        super().__init__(
            simulation.id,
            connection,
            BACKEND_NODE,
            prefix,
            BACKEND_PROPAGATED,
            clear_topic_on_connect=True,
        )
        self.simulation = simulation

    # -- callbacks ---------------------------------------------------------------------------
    def initialize(self, event: TransitionEvent) -> None:
        self.simulation.initialize()

    def start(self, event: TransitionEvent | None = None) -> None:
        if event is None:  # the base class's "start the MQTT side" form
            self.connect()

    def stop(self, event: TransitionEvent) -> None:
        # Waiting for the process and the upload must not keep the lock: received messages are
        # dropped and other commands refused meanwhile, so the stop ends as planned.
        with self.released_lock():
            self.simulation.cleanup(event.target)

    def fail(self, event: TransitionEvent) -> None:
        with self.released_lock():
            self.simulation.cleanup("failed")

    def on_state_changed(self, source: str, target: str, event: str) -> None:
        self.simulation.state_changed(source, target)

    def on_reconnect(self) -> None:
        if not self.simulation.record.ready:
            self.republish_last()

    def shutdown(self, event: TransitionEvent | None = None) -> None:
        super().shutdown(event)

    # -- commands ----------------------------------------------------------------------------
    def command(self, name: str) -> bool:
        """Fire ``name`` as a local command (see ``accept_command``)."""
        return self.accept_command(name)

    def fail_from_process(self) -> None:
        """The simserver died on its own: fire ``failed`` unless the lifecycle already ended."""
        if self.state in FINAL_STATES:
            return
        try:
            self.accept_command("failed")
        except InvalidTransitionError:
            pass  # a stop or another failure got there first
