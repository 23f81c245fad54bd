"""The Simulation Server's side of the simulation lifecycle: the callbacks it runs on each transition.

The backend drives it over MQTT (``initialized``, ``started``, ``paused``); it publishes
``completed`` when the script ends and ``failed`` when loading fails. Stop arrives as SIGTERM and is
fired locally by the server's shutdown sequence.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from hbp_nrp_commons import mqtt
from hbp_nrp_commons.lifecycle import (
    SIMSERVER_PROPAGATED,
    InvalidTransitionError,
    SimulationLifecycle,
    TransitionEvent,
)
from hbp_nrp_simserver.errors import ScriptError
from hbp_nrp_simserver.notifier import Notifier
from hbp_nrp_simserver.script_runner import STOP_JOIN_TIMEOUT, NRPScriptRunner

logger = logging.getLogger(__name__)


class SimulationServerLifecycle(SimulationLifecycle):
    """Runs the script runner as the lifecycle commands.

    Connects to the broker and subscribes to the lifecycle topic when built, so the backend's
    retained init message arrives at once and initializes the simulation in the lifecycle topic's
    worker thread.

    Args:
        sim_id: the simulation id (its integer form names the topics).
        settings: broker address and topic prefix (``hbp_nrp_commons.settings.MqttSettings``).
        runner: the script runner to drive.
        notifier: publishes a status at every state change.
        done_event: set once a final state was reached and everything is shut down; a new event
            when omitted.
        connection: an MQTT connection to use (and close at shutdown); a new one when omitted.
        connect: connect and subscribe now; otherwise call ``connect()`` later.
        local: no MQTT at all (a purely local lifecycle, for tests).
        timeout: seconds to wait for the broker.

    Raises:
        hbp_nrp_commons.mqtt.BrokerUnreachable: the broker did not answer in time.
    """

    def __init__(
        self,
        sim_id: str | int,
        settings: Any,
        runner: NRPScriptRunner,
        notifier: Notifier,
        *,
        done_event: threading.Event | None = None,
        connection: mqtt.MqttConnection | None = None,
        connect: bool = True,
        local: bool = False,
        timeout: float = 5.0,
    ) -> None:
        topic_id = int(sim_id)
        if connection is None and not local:
            base = mqtt.node_name(settings.prefix, mqtt.SIMSERVER_NODE)
            connection = mqtt.MqttConnection(settings, mqtt.client_id(base, topic_id))
        super().__init__(
            topic_id,
            connection,
            mqtt.SIMSERVER_NODE,
            settings.prefix,
            SIMSERVER_PROPAGATED,
            clear_topic_on_connect=False,
        )
        if done_event is not None:
            self.done_event = done_event
        self.runner = runner
        self.notifier = notifier
        # the script ended while paused; ``completed`` only leaves ``started``, so it is fired on resume
        self._ended_while_paused = False
        if connect and not local:
            try:
                self.connect(timeout)
            except Exception:
                if connection is not None:
                    connection.close()
                raise

    # -- transition callbacks ------------------------------------------------------------------

    def initialize(self, event: TransitionEvent) -> None:
        """Load and compile the script, initialize nrp-core, then clear the consumed init message."""
        try:
            self.runner.initialize()
        finally:
            self.clear_retained()

    def start(self, event: TransitionEvent | None = None) -> None:
        """Let the script run; start ``MainScriptThread`` unless one is alive.

        A script that already ended while paused is not run again: the simulation completes
        as soon as it is ``started`` (see :meth:`on_state_changed`). Called without an event it
        starts the MQTT side, as the base class's :meth:`start` does.
        """
        if event is None:
            self.connect()
            return
        if self._ended_while_paused:
            return
        self.runner.start(self._script_finished)

    def pause(self, event: TransitionEvent) -> None:
        """Hold the script at its next ``nrp.run_loop``."""
        self.runner.pause()

    def stop(self, event: TransitionEvent) -> None:
        """Request a stop and wait for the script thread, without holding the lifecycle lock."""
        self.runner.control.request_stop()
        with self.released_lock():
            self.runner.stop(STOP_JOIN_TIMEOUT)

    def fail(self, event: TransitionEvent) -> None:
        """Stop the script like ``stop``, then publish one status (state ``failed``)."""
        self.stop(event)
        self.notifier.publish_status()

    def on_state_changed(self, source: str, target: str, event: str) -> None:
        self.notifier.publish_status()
        if target == "started" and self._ended_while_paused:
            self._ended_while_paused = False
            logger.info("The main script ended while paused; the resumed simulation completes")
            self.accept_command("completed")  # the lock is still held: nothing comes in between

    def on_reconnect(self) -> None:
        self.notifier.publish_status()

    def shutdown(self, event: TransitionEvent | None = None) -> None:
        """Shut the script runner and nrp-core down, then the MQTT side."""
        try:
            self.runner.shutdown()
        finally:
            super().shutdown(event)

    # -- script end ----------------------------------------------------------------------------

    def _script_finished(self, error: ScriptError | None) -> None:
        """The script thread ended: fire ``completed`` unless a stop is in progress."""
        # No state check here: a script that ends at once may finish while ``started`` is still
        # being applied; accept_command waits for the lifecycle lock and then sees ``started``.
        if self.runner.stop_requested:
            return
        try:
            # checked and recorded under the lifecycle lock, so a ``started`` cannot slip in between
            with self._locked():
                if self.state == "paused":
                    # paused -> completed is no transition: complete once resumed (on_state_changed)
                    logger.info("The main script ended while paused; it completes when resumed")
                    self._ended_while_paused = True
                    return
                self.accept_command("completed")
        except InvalidTransitionError as exc:
            logger.info("Script ended while the lifecycle could not complete: %s", exc)
