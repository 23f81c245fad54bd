"""The REST server's MQTT view of one simulation: the Simulation Server's status and runtime errors.

:class:`SimulationSync` subscribes to the simulation's ``status`` and ``runtime_error`` topics. A
status marks the simulation ready, lets the lifecycle follow a ``completed``/``failed`` whose
lifecycle message was lost (the shared ``SimulationLifecycle.apply_peer_state``), and re-publishes
our last command when two statuses in a row disagree on started/paused. A runtime error becomes
the simulation's ``error``, completed from the simserver's private report (traceback, exit code).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from hbp_nrp_backend import events
from hbp_nrp_backend.registry import FINAL_STATES
from hbp_nrp_commons import mqtt
from hbp_nrp_commons.runtime_error_file import read_runtime_error

if TYPE_CHECKING:
    from hbp_nrp_backend.simulation import Simulation

logger = logging.getLogger(__name__)


class SimulationSync:
    """The MQTT input of one :class:`~hbp_nrp_backend.simulation.Simulation`.

    Attributes:
        last_status: the last status with a state the simserver published.
        final_status_seen: the simserver published a final status (``stopped`` or ``failed``).
    """

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.last_status: dict[str, Any] | None = None
        self.final_status_seen = False
        self._disagreements = 0

    def subscribe(self, connection: mqtt.MqttConnection) -> None:
        prefix = self.sim.manager.config.settings.mqtt.prefix
        connection.subscribe(mqtt.status_topic(prefix, self.sim.id), self._on_status, qos=0)
        connection.subscribe(mqtt.runtime_error_topic(prefix, self.sim.id), self._on_runtime_error, qos=0)

    def _on_status(self, topic: str, payload: bytes) -> None:
        try:
            status = json.loads(payload)
        except ValueError:
            return
        if not isinstance(status, dict) or not isinstance(status.get("state"), str):
            return  # progress messages carry no state
        self.last_status = status
        remote = status["state"]
        if remote in FINAL_STATES:
            self.final_status_seen = True
        if remote != "created" and not self.sim.record.ready:
            self.sim.record.ready = True
            self.sim.save()
        if self.sim.lifecycle is not None and remote in ("completed", "failed"):
            self.lifecycle_apply_remote(remote)
        self._resynchronize(remote)

    def _resynchronize(self, remote: str) -> None:
        """Two statuses in a row disagreeing on started/paused: re-publish our last command (it was lost)."""
        local = self.sim.record.state
        if (
            self.sim.lifecycle is None
            or self.sim.stop_target
            or local == remote
            or {local, remote} != {"started", "paused"}
        ):
            self._disagreements = 0
            return
        self._disagreements += 1
        if self._disagreements >= 2:
            self._disagreements = 0
            logger.warning(
                "Simulation %s: simserver reports %s, we are %s; re-publishing", self.sim.id, remote, local
            )
            self.sim.lifecycle.republish_last()

    def lifecycle_apply_remote(self, remote: str) -> None:
        """Follow a simserver-side ``completed``/``failed`` seen in a status (if its message was lost)."""
        local = self.sim.record.state
        if local in FINAL_STATES or local == remote or self.sim.stop_target:
            return
        if remote == "completed" and local != "started":
            return
        threading.Thread(
            target=self._apply_remote, args=(remote,), name=f"SimStatusSync-{self.sim.id}", daemon=True
        ).start()

    def _apply_remote(self, remote: str) -> None:
        lifecycle = self.sim.lifecycle
        if lifecycle is None:
            return
        try:
            lifecycle.apply_peer_state(remote)
        except Exception:
            logger.debug(
                "Simulation %s: could not follow remote state %s", self.sim.id, remote, exc_info=True
            )

    def _on_runtime_error(self, topic: str, payload: bytes) -> None:
        try:
            error = json.loads(payload)
        except ValueError:
            return
        if not isinstance(error, dict):
            return
        error.setdefault("traceback", "")
        self._complete_error(error)
        for key in ("msg", "fileName", "line_text", "traceback"):
            if isinstance(error.get(key), str):
                error[key] = self.sim.user_text(error[key])
        self.sim.record.error = error
        self.sim.save()
        events.runtime_error(self.sim.id, error)

    def _complete_error(self, error: dict[str, Any]) -> None:
        """Add the traceback and exit code of the simserver's private report to ``error`` (same msg)."""
        if self.sim.sim_dir is None:
            return
        report = read_runtime_error(self.sim.sim_dir)
        if report is None or report.get("msg") != error.get("msg"):
            return
        for key in ("traceback", "exit_code"):
            if key in report and not error.get(key):
                error[key] = report[key]

    def merge_runtime_report(self, report: dict[str, Any] | None = None, read_folder: bool = True) -> None:
        """Before the folder goes: a report whose message was lost (or raced the ``failed``) still
        reaches ``error``; an error of the same message gets its traceback and exit code.

        Args:
            report: the report when the caller has read it (a Ray node sends it back).
            read_folder: read the report from the simulation's folder when ``report`` is ``None``.
        """
        if report is None and read_folder and self.sim.sim_dir is not None:
            report = read_runtime_error(self.sim.sim_dir)
        if report is None:
            return
        current = self.sim.record.error
        if current is None or current.get("error_type") == "Process":
            merged = {**report, "traceback": self.sim.user_text(report.get("traceback", ""))}
            merged["msg"] = self.sim.user_text(merged.get("msg", ""))
            if current is not None and "exit_code" in current and "exit_code" not in merged:
                merged["exit_code"] = current["exit_code"]
            self.sim.record.error = merged
        elif current.get("msg") == report.get("msg") and not current.get("traceback"):
            self.sim.record.error = {**current, "traceback": self.sim.user_text(report.get("traceback", ""))}
            if "exit_code" in report:
                self.sim.record.error["exit_code"] = report["exit_code"]

    def publish_fallback_status(self) -> None:
        """The simserver ended without a final status: publish a ``failed`` status for it to MQTT clients."""
        last = self.last_status or {}
        status = {
            "realTime": float(last.get("realTime") or 0.0),
            "simulationTime": float(last.get("simulationTime") or 0.0),
            "state": "failed",
            "simulationTimeLeft": float(last.get("simulationTimeLeft") or 0.0),
        }
        connection = self.sim.connection
        if connection is None:
            return
        try:
            prefix = self.sim.manager.config.settings.mqtt.prefix
            connection.publish(mqtt.status_topic(prefix, self.sim.id), status, qos=0)
        except Exception:
            logger.warning("Simulation %s: could not publish the fallback status", self.sim.id, exc_info=True)
