"""Status, task progress and runtime errors of one simulation.

``Notifier`` is the null implementation (used by ``nrp run``, which has no broker): it only logs.
``MQTTNotifier`` publishes on ``[P/]nrp_simulation/<id>/status`` and ``.../runtime_error`` and runs
the 1 s status timer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from hbp_nrp_simserver.errors import ScriptError

logger = logging.getLogger(__name__)

STATUS_PERIOD = 1.0
SHUTDOWN_TASK = "Shutting down Simulation"

StatusSource = Callable[[], dict[str, Any]]


def status_payload(state: str, real_time: float, simulation_time: float, time_left: float) -> dict[str, Any]:
    """The status message: ``realTime``, ``simulationTime``, ``state``, ``simulationTimeLeft``.

    Every time field is a number (seconds).
    """
    return {
        "realTime": float(real_time),
        "simulationTime": float(simulation_time),
        "state": str(state),
        "simulationTimeLeft": float(time_left),
    }


class Notifier:
    """Reports the state of a simulation; this base class only logs (no broker).

    Args:
        sim_id: the simulation id.
        status_source: returns the current status message (``status_payload``); may be set later.
    """

    def __init__(self, sim_id: str, status_source: StatusSource | None = None) -> None:
        self.sim_id = str(sim_id)
        self.status_source = status_source
        self._task_lock = threading.RLock()
        self._task: dict[str, Any] | None = None

    # -- publishing primitives, overridden by MQTTNotifier --------------------------------------

    def _send_status(self, payload: dict[str, Any]) -> None:
        logger.debug("status %s", payload)

    def _send_error(self, payload: dict[str, Any]) -> None:
        """Nothing to send to; the error was logged by ``publish_error``."""

    # -- public API ----------------------------------------------------------------------------

    def current_status(self) -> dict[str, Any] | None:
        """The status message from ``status_source``, or None when there is none yet."""
        if self.status_source is None:
            return None
        return self.status_source()

    def publish_status(self, status: dict[str, Any] | None = None) -> None:
        """Publish ``status``, or the current status; errors are logged and ignored."""
        try:
            payload = status if status is not None else self.current_status()
            if payload is not None:
                self._send_status(payload)
        except Exception:
            logger.exception("Could not publish the simulation status")

    def publish_error(self, error: ScriptError) -> None:
        """Log an error and publish it as a ``runtime_error`` message; publish errors are logged."""
        logger.error("%s error: %s (%s:%s)", error.error_type, error.msg, error.file_name, error.line_number)
        try:
            self._send_error(error.payload(self.sim_id))
        except Exception:
            logger.exception("Could not publish the runtime error")

    def start_task(
        self, task: str, subtask: str = "", number_of_subtasks: int = 0, block_ui: bool = True
    ) -> None:
        """Open a progress task (published for the frontend to show); an open task is finished first."""
        with self._task_lock:
            if self._task is not None:
                self.finish_task()
            self._task = {
                "task": task,
                "subtask": subtask,
                "number_of_subtasks": int(number_of_subtasks),
                "subtask_index": 0,
                "block_ui": bool(block_ui),
            }
            self.publish_status({"progress": dict(self._task)})

    def update_task(self, subtask: str, update_progress: bool = True, block_ui: bool | None = None) -> None:
        """Report progress of the open task; ``update_progress`` increments ``subtask_index``."""
        with self._task_lock:
            if self._task is None:
                logger.warning("No task is open; progress %r not reported", subtask)
                return
            self._task["subtask"] = subtask
            if update_progress:
                self._task["subtask_index"] += 1
            if block_ui is not None:
                self._task["block_ui"] = bool(block_ui)
            self.publish_status({"progress": dict(self._task)})

    def finish_task(self) -> None:
        """Close the open task (``done: true``) and reset its counters."""
        with self._task_lock:
            if self._task is None:
                return
            name = self._task["task"]
            self._task = None
            self.publish_status({"progress": {"task": name, "done": True}})

    @contextlib.contextmanager
    def task(self, name: str) -> Iterator[Notifier]:
        """``with notifier.task(name):`` opens a task with 0 subtasks, ``block_ui`` true, and closes it."""
        self.start_task(name, "", 0, True)
        try:
            yield self
        finally:
            self.finish_task()

    def start_status_timer(self, period: float = STATUS_PERIOD) -> None:
        """Publish the status every ``period`` seconds (no-op without a broker)."""

    def shutdown(self) -> None:
        """Stop the timer and release the connection."""


class MQTTNotifier(Notifier):
    """Publishes status (every second and on demand), progress and runtime errors over MQTT.

    Args:
        settings: broker address and topic prefix (``hbp_nrp_commons.settings.MqttSettings``).
        sim_id: the simulation id; topics use its integer form when it has one.
        status_source: see ``Notifier``.
        connect_timeout: seconds to wait for the broker in ``connect``.
    """

    def __init__(
        self,
        settings: Any,
        sim_id: str,
        status_source: StatusSource | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        from hbp_nrp_commons import mqtt

        super().__init__(sim_id, status_source)
        self._settings = settings
        topic_id = _topic_id(sim_id)
        self.status_topic = mqtt.status_topic(settings.prefix, topic_id)
        self.runtime_error_topic = mqtt.runtime_error_topic(settings.prefix, topic_id)
        base = mqtt.node_name(settings.prefix, mqtt.NOTIFIER_NODE)
        self._connection = mqtt.MqttConnection(settings, mqtt.client_id(base, topic_id))
        # after a reconnect the backend resynchronises from the status, so publish it at once
        self._connection.on_connect(self.publish_status)
        self._connect_timeout = connect_timeout
        self._timer_stop = threading.Event()
        self._timer: threading.Thread | None = None

    def connect(self) -> None:
        """Connect to the broker.

        Raises:
            hbp_nrp_commons.mqtt.BrokerUnreachable: the broker did not answer in time.
        """
        self._connection.connect(self._connect_timeout)

    def _send_status(self, payload: dict[str, Any]) -> None:
        self._connection.publish(self.status_topic, payload, qos=0, retain=False)

    def _send_error(self, payload: dict[str, Any]) -> None:
        self._connection.publish(self.runtime_error_topic, payload, qos=0, retain=False)

    def start_status_timer(self, period: float = STATUS_PERIOD) -> None:
        """Start thread ``SimServerStatusUpdateTimer``: one status at once, then one every ``period``."""
        if self._timer is not None:
            return
        self._timer_stop.clear()

        def tick() -> None:
            while True:
                self.publish_status()
                if self._timer_stop.wait(period):
                    return

        self._timer = threading.Thread(target=tick, name="SimServerStatusUpdateTimer", daemon=True)
        self._timer.start()

    def stop_status_timer(self) -> None:
        """Cancel the status timer and wait for its thread."""
        self._timer_stop.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(5)
        self._timer = None

    def shutdown(self) -> None:
        """Cancel the timer and close the connection (pending messages are flushed by ``close``)."""
        self.stop_status_timer()
        try:
            self._connection.close()
        except Exception:
            logger.exception("Error while closing the notifier's MQTT connection")


def _topic_id(sim_id: str) -> str:
    """The simulation id as used in topic names: its integer form when it has one."""
    try:
        return str(int(sim_id))
    except (TypeError, ValueError):
        return str(sim_id)
