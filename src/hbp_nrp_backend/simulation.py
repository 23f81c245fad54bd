"""One simulation of the REST server: its record, its directory, its Simulation Server process.

:class:`Simulation` holds the registry record and, while the simulation runs, its lifecycle, its
MQTT connection (read by :class:`~hbp_nrp_backend.simulation_sync.SimulationSync`) and its process.
The lifecycle's callbacks call :meth:`Simulation.initialize` and :meth:`Simulation.cleanup`, which
have the server's executor (:mod:`hbp_nrp_backend.executors`) clone and spawn, and terminate,
upload the logs and delete the directory. What it needs from
the server that owns it is :class:`SimulationHost`.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hbp_nrp_backend import events
from hbp_nrp_backend.config import BackendConfig
from hbp_nrp_backend.errors import TransitionError
from hbp_nrp_backend.logs import LogUploader
from hbp_nrp_backend.mqtt_accounts import DynsecAccounts
from hbp_nrp_backend.registry import FINAL_STATES, Registry, SimulationRecord
from hbp_nrp_backend.simserver_process import ProcessExit, SimulationServerProcess
from hbp_nrp_backend.simulation_sync import SimulationSync
from hbp_nrp_commons import mqtt
from hbp_nrp_commons.mqtt_identity import PASSWORD_VARIABLE, credential, simulation_user
from hbp_nrp_commons.settings import MqttSettings
from hbp_nrp_commons.user_paths import relative_paths

if TYPE_CHECKING:
    from hbp_nrp_backend.executors import Executor
    from hbp_nrp_backend.lifecycle import BackendSimulationLifecycle

logger = logging.getLogger(__name__)

REQUESTABLE_STATES = ("started", "paused", "stopped")
FINALIZED_MESSAGE = "The state transition is invalid (The simulation requested is finalized)"
BROKER_TIMEOUT = 5.0


def simulation_credentials(settings: MqttSettings, sim_id: int) -> dict[str, str]:
    """The environment that gives a Simulation Server its own MQTT identity (none without a secret)."""
    if not settings.secret:
        return {}
    return {PASSWORD_VARIABLE: credential(settings.secret, simulation_user(settings.prefix, sim_id))}


class ExperimentCloner(Protocol):
    """What a simulation needs from the storage client."""

    def clone_experiment(self, token: str, experiment_id: str, dest: Path) -> object: ...


class SimulationHost(Protocol):
    """What a :class:`Simulation` needs from the server that owns it (the ``SimulationManager``).

    Read-only members: a host may hold more than this (its storage client does more than clone).
    """

    @property
    def config(self) -> BackendConfig: ...

    @property
    def storage(self) -> ExperimentCloner: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def uploader(self) -> LogUploader: ...

    @property
    def simserver_module(self) -> str: ...

    @property
    def mqtt_accounts(self) -> DynsecAccounts | None: ...

    def link_simulation_dir(self, sim_dir: Path) -> None: ...

    def unlink_simulation_dir(self, sim_dir: Path) -> None: ...

    @property
    def executor(self) -> Executor: ...

    def stop_quietly(self, sim: Simulation, reason: str) -> None: ...


class Simulation:
    """One simulation: its registry record and, while it runs, its lifecycle, MQTT link and process.

    Reading attributes never blocks. Transitions go through :attr:`lifecycle`, whose callbacks
    (:meth:`initialize`, :meth:`cleanup`) do the work.
    """

    def __init__(self, manager: SimulationHost, record: SimulationRecord) -> None:
        self.manager = manager
        self.record = record
        self.lifecycle: BackendSimulationLifecycle | None = None
        self.connection: mqtt.MqttConnection | None = None
        self.process: SimulationServerProcess | None = None
        self.admission: Any = None
        self.sim_dir: Path | None = Path(record.sim_dir) if record.sim_dir else None
        self.cleaned = threading.Event()
        self.stop_target: str | None = None
        self.started_at = time.monotonic()
        self.completed_at: float | None = None
        self.sync = SimulationSync(self)
        self._cleanup_lock = threading.Lock()
        if record.state in FINAL_STATES:
            self.cleaned.set()

    # -- reading ---------------------------------------------------------------------------
    @property
    def id(self) -> int:
        return self.record.id

    @property
    def state(self) -> str:
        return self.record.state

    @property
    def active(self) -> bool:
        """Counts against ``NRP_MAX_SIMULATIONS``: not final, or final while still cleaning up."""
        return not self.cleaned.is_set()

    def representation(self) -> dict[str, Any]:
        return self.record.representation(self.manager.config.settings.mqtt.prefix)

    def state_representation(self) -> dict[str, Any]:
        return {"state": self.record.state, "ready": self.record.ready, "error": self.record.error}

    def user_text(self, text: str) -> str:
        """``text`` with paths in the simulation directory made relative to it (users know only
        their experiment, not the server's temporary folder)."""
        return relative_paths(text, self.sim_dir) if self.sim_dir is not None else text

    def loading_error(self, message: str) -> dict[str, Any]:
        """The REST ``error`` of a failed start: the fields of a ``runtime_error`` message, ``traceback``."""
        return {
            "sim_id": str(self.id),
            "msg": self.user_text(message),
            "error_type": "Loading",
            "fileName": self.record.main_script,
            "line_number": -1,
            "offset": -1,
            "line_text": "",
            "traceback": "",
        }

    def reject_if_final(self) -> None:
        """Raise the 400 ``finalized`` error when the simulation has ended."""
        if self.record.state in FINAL_STATES or self.lifecycle is None:
            raise TransitionError(FINALIZED_MESSAGE)

    def save(self) -> None:
        self.manager.registry.save(self.record)

    def note_logs_problem(self, message: str) -> None:
        """Say in ``error`` what became of the logs: the error itself if there is none, else its
        ``logs`` field (the error stays)."""
        record = self.record
        if record.error is None:
            record.error = {"msg": message, "error_type": "Logs"}
        else:
            record.error = {**record.error, "logs": message}
        self.save()

    # -- lifecycle callbacks -----------------------------------------------------------------
    def state_changed(self, source: str, target: str) -> None:
        """Record the lifecycle's new state (called by the lifecycle after each change)."""
        self.record.state = target
        if target == "completed" and source != "completed":
            self.completed_at = time.monotonic()
        self.save()
        record = self.record
        events.state_changed(self.id, source, target, record.experiment_id, record.owner, record.error)

    def simserver_environment(self, broker_address: str) -> dict[str, str]:
        """What the Simulation Server's environment adds: the broker (as seen from where it runs),
        the topic prefix and its own MQTT credential."""
        mqtt_settings = self.manager.config.settings.mqtt
        return {
            "NRP_MQTT_BROKER_ADDRESS": broker_address,
            "NRP_MQTT_PREFIX": mqtt_settings.prefix,
            **simulation_credentials(mqtt_settings, self.id),
        }

    def initialize(self) -> None:
        """Give the simulation its MQTT identity and have the executor start it (clone, spawn).

        Raises:
            ApiError: the executor refused (e.g. 409: the admitted resources are gone), or the
                symlink could not be created (500, its own message).
            Exception: cloning or spawning failed; the caller wraps it.
        """
        manager = self.manager
        mqtt_settings = manager.config.settings.mqtt
        if manager.mqtt_accounts is not None:  # mosquitto: the broker must know the identity first
            username = simulation_user(mqtt_settings.prefix, self.id)
            manager.mqtt_accounts.create(username, credential(mqtt_settings.secret, username))
        manager.executor.start(self, self.admission)

    def cleanup(self, target: str) -> None:
        """Stop logic of ``stop`` and ``fail``: the executor terminates the process, uploads the logs
        and deletes the directory.

        Idempotent and never raises; runs inside the lifecycle's transition.
        """
        with self._cleanup_lock:
            if self.cleaned.is_set():
                return
            self.stop_target = self.stop_target or target
            manager = self.manager
            try:
                manager.executor.stop(self)
            except Exception:
                logger.exception("Cleaning up simulation %s failed", self.id)
            finally:
                if manager.mqtt_accounts is not None:
                    manager.mqtt_accounts.delete(
                        simulation_user(manager.config.settings.mqtt.prefix, self.id)
                    )
                self.record.token = None
                self.record.pid = None
                self.save()
                self.cleaned.set()

    def shutdown(self) -> None:
        """The lifecycle reached a final state: close the MQTT connection."""
        if self.connection is not None:
            self.connection.close()

    # -- process supervision -----------------------------------------------------------------
    def process_exited(self, exit: ProcessExit) -> None:
        """The executor saw the process end (its monitor thread): a failure fires ``failed`` from
        another thread (never blocks here).

        A clean exit we did not ask for (someone else sent SIGTERM) stops the simulation, so its
        logs are uploaded and its slot freed instead of it staying ``started`` with no process.
        """
        if not exit.failed:
            if not exit.requested and self.stop_target is None:
                threading.Thread(
                    target=self.manager.stop_quietly,
                    args=(self, "Simulation Server exited on its own"),
                    name=f"SimExited-{self.id}",
                    daemon=True,
                ).start()
            return
        if self.stop_target == "stopped":
            return
        if self.record.error is None or exit.limit:  # a limit explains whatever the script reported
            self.record.error = exit.error()
            self.save()
        if not self.sync.final_status_seen:
            self.sync.publish_fallback_status()
        if self.stop_target is None:
            threading.Thread(target=self._fail, name=f"SimFail-{self.id}", daemon=True).start()

    def _fail(self) -> None:
        lifecycle = self.lifecycle
        if lifecycle is None or self.record.state in FINAL_STATES:
            return
        try:
            lifecycle.fail_from_process()
        except Exception:
            logger.exception("Simulation %s: firing 'failed' raised", self.id)
