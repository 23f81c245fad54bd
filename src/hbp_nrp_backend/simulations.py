"""Simulations of one REST server: launch, transitions, supervision, clean-up, restart recovery.

:class:`SimulationManager` owns the registry, the storage client, authentication, the log
uploader and every :class:`Simulation`. Locking: the manager's lock covers only
ID allocation and the capacity check; each simulation's transitions are serialised by its own
lifecycle lock; reading a simulation never takes a lock, so GET requests never wait for a
transition (a stop can take seconds).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hbp_nrp_backend import events
from hbp_nrp_backend.auth import Authenticator, User
from hbp_nrp_backend.config import BackendConfig
from hbp_nrp_backend.errors import (
    BROKER_UNREACHABLE,
    MODIFY_FORBIDDEN,
    SIMULATION_NOT_FOUND,
    VIEW_FORBIDDEN,
    ApiError,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    TransitionError,
)
from hbp_nrp_backend.logs import LogUploader
from hbp_nrp_backend.registry import FINAL_STATES, RUNNING_STATES, Registry, SimulationRecord
from hbp_nrp_backend.simserver_process import (
    KILL_WAIT,
    ProcessExit,
    SimulationServerProcess,
    child_environment,
    process_carries_id,
    simserver_command,
    terminate_orphan,
)
from hbp_nrp_commons import mqtt
from hbp_nrp_commons.lifecycle import REST_TARGETS
from hbp_nrp_commons.runtime_error_file import read_runtime_error
from hbp_nrp_commons.user_paths import relative_paths

logger = logging.getLogger(__name__)

REQUESTABLE_STATES = ("started", "paused", "stopped")
FINALIZED_MESSAGE = "The state transition is invalid (The simulation requested is finalized)"
BACKEND_RESTARTED = {"msg": "Backend restarted", "error_type": "Process"}
BROKER_TIMEOUT = 5.0
WATCHDOG_PERIOD = 0.5


@dataclass(frozen=True)
class LaunchRequest:
    """A checked ``POST /simulation`` body."""

    experiment_id: str
    experiment_configuration: str = "simulation_config.json"
    main_script: str = "main_script.py"
    ctx_id: str | None = None


def _targets(state: str) -> str:
    return ", ".join(REST_TARGETS.get(state, ()))


class Simulation:
    """One simulation: its registry record and, while it runs, its lifecycle, MQTT link and process.

    Reading attributes never blocks. Transitions go through :attr:`lifecycle`, whose callbacks
    (:meth:`initialize`, :meth:`cleanup`) do the work.
    """

    def __init__(self, manager: SimulationManager, record: SimulationRecord) -> None:
        self.manager = manager
        self.record = record
        self.lifecycle: Any = None
        self.connection: mqtt.MqttConnection | None = None
        self.process: SimulationServerProcess | None = None
        self.sim_dir: Path | None = Path(record.sim_dir) if record.sim_dir else None
        self.cleaned = threading.Event()
        self.stop_target: str | None = None
        self.started_at = time.monotonic()
        self.completed_at: float | None = None
        self.last_status: dict[str, Any] | None = None
        self.final_status_seen = False
        self._disagreements = 0
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

    # -- lifecycle callbacks -----------------------------------------------------------------
    def state_changed(self, source: str, target: str) -> None:
        """Record the lifecycle's new state (called by the lifecycle after each change)."""
        self.record.state = target
        if target == "completed" and source != "completed":
            self.completed_at = time.monotonic()
        self.save()
        record = self.record
        events.state_changed(self.id, source, target, record.experiment_id, record.owner, record.error)

    def initialize(self) -> None:
        """Create the directory, clone the experiment, spawn the Simulation Server.

        Raises:
            ApiError: the symlink could not be created (500, its own message).
            Exception: cloning or spawning failed; the caller wraps it.
        """
        manager = self.manager
        sim_dir = Path(tempfile.mkdtemp(prefix=f"nrp.{self.id}."))
        self.sim_dir = sim_dir
        self.record.sim_dir = str(sim_dir)
        self.save()
        manager.link_simulation_dir(sim_dir)
        manager.storage.clone_experiment(self.record.token or "", self.record.experiment_id, sim_dir)
        settings = manager.config.settings
        command = simserver_command(
            sim_dir,
            self.id,
            self.record.main_script,
            self.record.experiment_configuration,
            verbose=manager.config.verbose,
            module=manager.simserver_module,
        )
        env = child_environment(
            os.environ,
            {
                "NRP_MQTT_BROKER_ADDRESS": settings.mqtt.address,
                "NRP_MQTT_PREFIX": settings.mqtt.prefix,
                "PYTHONUNBUFFERED": "1",
            },
        )
        process = SimulationServerProcess(command, sim_dir, self.id, env, on_exit=self._process_exited)
        process.start()
        self.process = process
        self.record.pid = process.pid
        self.save()

    def cleanup(self, target: str) -> None:
        """Stop logic of ``stop`` and ``fail``: terminate, upload logs, delete the directory.

        Idempotent and never raises; runs inside the lifecycle's transition.
        """
        with self._cleanup_lock:
            if self.cleaned.is_set():
                return
            self.stop_target = self.stop_target or target
            manager = self.manager
            try:
                if self.process is not None:
                    self.process.terminate(manager.config.stop_grace)
                    self._merge_runtime_report()
                    if self.sim_dir is not None:
                        manager.uploader.archive(
                            self.sim_dir,
                            self.id,
                            self.record.experiment_configuration,
                            self.record.experiment_id,
                            self.record.owner,
                            self.record.token,
                        )
                if self.sim_dir is not None:
                    manager.unlink_simulation_dir(self.sim_dir)
                    shutil.rmtree(self.sim_dir, ignore_errors=True)
            except Exception:
                logger.exception("Cleaning up simulation %s failed", self.id)
            finally:
                self.record.token = None
                self.record.pid = None
                self.save()
                self.cleaned.set()

    def shutdown(self) -> None:
        """The lifecycle reached a final state: close the MQTT connection."""
        if self.connection is not None:
            self.connection.close()

    # -- MQTT input --------------------------------------------------------------------------
    def subscribe(self, connection: mqtt.MqttConnection) -> None:
        prefix = self.manager.config.settings.mqtt.prefix
        connection.subscribe(mqtt.status_topic(prefix, self.id), self._on_status, qos=0)
        connection.subscribe(mqtt.runtime_error_topic(prefix, self.id), self._on_runtime_error, qos=0)

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
        if remote != "created" and not self.record.ready:
            self.record.ready = True
            self.save()
        if self.lifecycle is not None and remote in ("completed", "failed"):
            self.lifecycle_apply_remote(remote)
        self._resynchronize(remote)

    def _resynchronize(self, remote: str) -> None:
        """Two statuses in a row disagreeing on started/paused: re-publish our last command (it was lost)."""
        local = self.record.state
        if (
            self.lifecycle is None
            or self.stop_target
            or local == remote
            or {local, remote} != {"started", "paused"}
        ):
            self._disagreements = 0
            return
        self._disagreements += 1
        if self._disagreements >= 2:
            self._disagreements = 0
            logger.warning(
                "Simulation %s: simserver reports %s, we are %s; re-publishing", self.id, remote, local
            )
            self.lifecycle.republish_last()

    def lifecycle_apply_remote(self, remote: str) -> None:
        """Follow a simserver-side ``completed``/``failed`` seen in a status (if its message was lost)."""
        local = self.record.state
        if local in FINAL_STATES or local == remote or self.stop_target:
            return
        if remote == "completed" and local != "started":
            return
        threading.Thread(
            target=self._apply_remote, args=(remote,), name=f"SimStatusSync-{self.id}", daemon=True
        ).start()

    def _apply_remote(self, remote: str) -> None:
        try:
            self.lifecycle.apply_peer_state(remote)
        except Exception:
            logger.debug("Simulation %s: could not follow remote state %s", self.id, remote, exc_info=True)

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
                error[key] = self.user_text(error[key])
        self.record.error = error
        self.save()
        events.runtime_error(self.id, error)

    def _complete_error(self, error: dict[str, Any]) -> None:
        """Add the traceback and exit code of the simserver's private report to ``error`` (same msg)."""
        if self.sim_dir is None:
            return
        report = read_runtime_error(self.sim_dir)
        if report is None or report.get("msg") != error.get("msg"):
            return
        for key in ("traceback", "exit_code"):
            if key in report and not error.get(key):
                error[key] = report[key]

    def _merge_runtime_report(self) -> None:
        """Before the folder goes: a report whose message was lost (or raced the ``failed``) still
        reaches ``error``; an error of the same message gets its traceback and exit code."""
        if self.sim_dir is None:
            return
        report = read_runtime_error(self.sim_dir)
        if report is None:
            return
        current = self.record.error
        if current is None or current.get("error_type") == "Process":
            merged = {**report, "traceback": self.user_text(report.get("traceback", ""))}
            merged["msg"] = self.user_text(merged.get("msg", ""))
            if current is not None and "exit_code" in current and "exit_code" not in merged:
                merged["exit_code"] = current["exit_code"]
            self.record.error = merged
        elif current.get("msg") == report.get("msg") and not current.get("traceback"):
            self.record.error = {**current, "traceback": self.user_text(report.get("traceback", ""))}
            if "exit_code" in report:
                self.record.error["exit_code"] = report["exit_code"]

    # -- process supervision -----------------------------------------------------------------
    def _process_exited(self, exit: ProcessExit) -> None:
        """Monitor thread: a failure fires ``failed`` from another thread (never blocks here).

        A clean exit we did not ask for (someone else sent SIGTERM) stops the simulation, so its
        logs are uploaded and its slot freed instead of it staying ``started`` with no process.
        """
        if not exit.failed:
            if not exit.requested and self.stop_target is None:
                threading.Thread(
                    target=self.manager._stop_quietly,
                    args=(self, "Simulation Server exited on its own"),
                    name=f"SimExited-{self.id}",
                    daemon=True,
                ).start()
            return
        if self.stop_target == "stopped":
            return
        if self.record.error is None:
            self.record.error = exit.error()
            self.save()
        if not self.final_status_seen:
            self._publish_fallback_status()
        if self.stop_target is None:
            threading.Thread(target=self._fail, name=f"SimFail-{self.id}", daemon=True).start()

    def _publish_fallback_status(self) -> None:
        """The simserver ended without a final status: publish a ``failed`` status for it to MQTT clients."""
        last = self.last_status or {}
        status = {
            "realTime": float(last.get("realTime") or 0.0),
            "simulationTime": float(last.get("simulationTime") or 0.0),
            "state": "failed",
            "simulationTimeLeft": float(last.get("simulationTimeLeft") or 0.0),
        }
        connection = self.connection
        if connection is None:
            return
        try:
            prefix = self.manager.config.settings.mqtt.prefix
            connection.publish(mqtt.status_topic(prefix, self.id), status, qos=0)
        except Exception:
            logger.warning("Simulation %s: could not publish the fallback status", self.id, exc_info=True)

    def _fail(self) -> None:
        lifecycle = self.lifecycle
        if lifecycle is None or self.record.state in FINAL_STATES:
            return
        try:
            lifecycle.fail_from_process()
        except Exception:
            logger.exception("Simulation %s: firing 'failed' raised", self.id)


class SimulationManager:
    """Every simulation of this server, and the services they share.

    Args:
        config: the backend configuration.
        storage: the storage client; built from the settings when ``None``.
    """

    def __init__(self, config: BackendConfig, storage: Any = None) -> None:
        from hbp_nrp_backend.storage_client import StorageClient

        self.config = config
        settings = config.settings
        self.storage = storage or StorageClient.from_settings(settings)
        self.auth = Authenticator(config.auth, self.storage, config.admin_users, ttl=config.auth_cache_ttl)
        upload_client = storage or StorageClient(settings.storage_url, settings.storage_timeout, backoff=())
        self.uploader = LogUploader(
            upload_client,
            config.log_spool_dir,
            config.spool_retry_interval,
            self.auth.newest_token,
            max_bytes=config.log_max_bytes,
            failed_keep=config.log_failed_keep,
            on_failure=self._logs_refused,
        )
        self.registry = Registry(config.state_dir)
        self.simserver_module = config.simserver_module
        self._lock = threading.Lock()
        self._link_lock = threading.Lock()
        self._pending = 0
        self._simulations: dict[int, Simulation] = {}
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._auto_stopping: set[int] = set()
        for record in self.registry.load_all():
            self._simulations[record.id] = Simulation(self, record)

    # -- start-up and shutdown -----------------------------------------------------------------
    def start(self) -> None:
        """Reconcile with a previous run, clear stale retained messages, start background threads."""
        self.reconcile()
        self.clear_stale_retained()
        self.uploader.start()
        self._watchdog = threading.Thread(target=self._watch, name="SimulationWatchdog", daemon=True)
        self._watchdog.start()

    def reconcile(self) -> None:
        """Fail every simulation a previous run left unfinished, kill its simserver, save its logs."""
        for sim in list(self._simulations.values()):
            record = sim.record
            if record.state not in RUNNING_STATES or sim.lifecycle is not None:
                continue
            logger.warning("Simulation %s was left %s by a previous run; failing it", record.id, record.state)
            record.state = "failed"
            record.error = dict(BACKEND_RESTARTED)
            sim.save()
            if record.pid and process_carries_id(record.pid, record.id):
                logger.info("Terminating the surviving Simulation Server %s (pid %s)", record.id, record.pid)
                terminate_orphan(record.pid, self.config.stop_grace)
            if sim.sim_dir is not None and sim.sim_dir.is_dir():
                self.uploader.archive(
                    sim.sim_dir,
                    record.id,
                    record.experiment_configuration,
                    record.experiment_id,
                    record.owner,
                    record.token,
                )
                shutil.rmtree(sim.sim_dir, ignore_errors=True)
            record.token = None
            record.pid = None
            sim.save()
            sim.cleaned.set()

    def clear_stale_retained(self, listen: float = 0.5) -> None:
        """Clear retained lifecycle messages a crashed run left on the broker (new simulations get them)."""
        settings = self.config.settings.mqtt
        connection = mqtt.MqttConnection(settings, mqtt.client_id(self.node_name, "cleanup"))
        try:
            connection.connect(BROKER_TIMEOUT)
            mqtt.clear_retained_matching(
                connection, mqtt.lifecycle_topic(settings.prefix, "+"), settle=listen
            )
        except mqtt.BrokerUnreachable as exc:
            logger.warning("Could not clear stale lifecycle messages: %s", exc)
        finally:
            connection.close()

    def shutdown(self) -> None:
        """Stop every active simulation as a user stop would (logs uploaded or spooled)."""
        self._stop.set()
        threads = []
        for sim in list(self._simulations.values()):
            if sim.lifecycle is not None and sim.state not in FINAL_STATES:
                thread = threading.Thread(target=self._stop_quietly, args=(sim, "server shutdown"))
                thread.start()
                threads.append(thread)
        for thread in threads:
            thread.join(self.config.stop_grace + 60)
        for sim in list(self._simulations.values()):  # stops already in progress finish too
            if sim.lifecycle is not None:
                sim.cleaned.wait(self.config.stop_grace + 60)
        self.uploader.close()
        if self._watchdog is not None:
            self._watchdog.join(2)
        self.registry.close()

    @property
    def node_name(self) -> str:
        return mqtt.node_name(self.config.settings.mqtt.prefix, mqtt.BACKEND_NODE)

    def _logs_refused(self, sim_id: int, message: str) -> None:
        """Storage refused a simulation's logs for good: say so in its ``error`` (kept if any)."""
        sim = self._simulations.get(sim_id)
        if sim is None:
            return
        record = sim.record
        if record.error is None:
            record.error = {"msg": message, "error_type": "Logs"}
        else:
            record.error = {**record.error, "logs": message}
        sim.save()

    # -- lookup and permissions ------------------------------------------------------------------
    def find(self, sim_id: int) -> Simulation:
        sim = self._simulations.get(sim_id)
        if sim is None:
            raise NotFound(SIMULATION_NOT_FOUND)
        return sim

    def all(self) -> list[Simulation]:
        return [self._simulations[key] for key in sorted(self._simulations)]

    def check_view(self, user: User | None, sim: Simulation) -> None:
        assert user is not None
        record = sim.record
        if not self.auth.can_view(user, record.owner, record.experiment_id, record.ctx_id):
            raise Forbidden(VIEW_FORBIDDEN)

    def check_modify(self, user: User | None, sim: Simulation) -> None:
        assert user is not None
        if not self.auth.can_modify(user, sim.record.owner):
            raise Forbidden(MODIFY_FORBIDDEN)

    def visible_to(self, user: User) -> list[Simulation]:
        """``GET /simulation``: the caller's simulations, or all of them for admins."""
        if self.auth.sees_all(user):
            return self.all()
        return [sim for sim in self.all() if sim.record.owner == user.id]

    def active_count(self) -> int:
        return sum(1 for sim in self._simulations.values() if sim.active)

    # -- launch ------------------------------------------------------------------------------------
    def launch(self, user: User, request: LaunchRequest) -> Simulation:
        """``POST /simulation`` after the body was checked.

        Checks the capacity (409) and the experiment's access (404), allocates the id, connects the
        simulation's lifecycle to MQTT (503 when the broker is unreachable), registers the simulation
        and fires ``initialized``, which clones the experiment and spawns the Simulation Server.
        """
        from hbp_nrp_backend.lifecycle import BackendSimulationLifecycle

        limit = self.config.max_simulations
        with self._lock:
            if self.active_count() + self._pending >= limit:
                raise Conflict(
                    f"Maximum number of simulations reached on this server ({limit}); stop one first"
                )
            self._pending += 1
        try:
            if not self.auth.experiment_accessible(user, request.experiment_id, request.ctx_id):
                raise NotFound(f"Experiment {request.experiment_id} not found in storage")
            sim_id = self.registry.allocate_id()
            prefix = self.config.settings.mqtt.prefix
            connection = mqtt.MqttConnection(
                self.config.settings.mqtt, mqtt.client_id(self.node_name, sim_id)
            )
            record = SimulationRecord(
                id=sim_id,
                experiment_id=request.experiment_id,
                experiment_configuration=request.experiment_configuration,
                main_script=request.main_script,
                owner=user.id,
                ctx_id=request.ctx_id,
                token=user.token,
            )
            sim = Simulation(self, record)
            sim.connection = connection
            try:
                sim.subscribe(connection)
                lifecycle = BackendSimulationLifecycle(sim, connection, prefix)
                lifecycle.connect(BROKER_TIMEOUT)
            except mqtt.BrokerUnreachable as exc:
                connection.close()
                raise ServiceUnavailable(BROKER_UNREACHABLE) from exc
            sim.lifecycle = lifecycle
            sim.save()
            with self._lock:
                self._simulations[sim_id] = sim
        finally:
            with self._lock:
                self._pending -= 1
        try:
            sim.lifecycle.command("initialized")
        except ApiError as exc:
            sim.record.error = sim.loading_error(exc.message)
            sim.save()
            events.launch_failed(sim_id, request.experiment_id, exc.message)
            raise
        except Exception as exc:
            cause = exc
            message = f'Error starting the simulation. ("{cause!r}") An exception has occurred'
            sim.record.error = sim.loading_error(message)
            sim.save()
            logger.error("Simulation %s could not start", sim_id, exc_info=exc)
            message = sim.user_text(message)
            events.launch_failed(sim_id, request.experiment_id, message)
            raise ApiError(message, 500, data=sim.user_text(str(cause))) from exc
        return sim

    # -- transitions ---------------------------------------------------------------------------
    def request_state(self, sim: Simulation, requested: Any, user: User | None = None) -> dict[str, Any]:
        """``PUT /simulation/<id>/state`` after the 404/401/403/final checks; 400 for an illegal state."""
        current = sim.state
        if requested not in REQUESTABLE_STATES:
            raise TransitionError(
                f"Invalid state requested: ({requested}). Current state: '{current}'; "
                f"allowed: {_targets(current)}"
            )
        lifecycle = sim.lifecycle
        if lifecycle is None:
            raise TransitionError(FINALIZED_MESSAGE)
        from hbp_nrp_backend.lifecycle import InvalidTransitionError, LifecycleBusyError

        try:
            lifecycle.command(requested)
        except LifecycleBusyError as exc:
            if requested == "stopped" and self._wait_for_cleanup(sim):
                # Another stop (the watchdog's, a second click) got there first: answer as it ends.
                return sim.state_representation()
            raise TransitionError(f"The state transition is invalid ({exc})") from exc
        except InvalidTransitionError as exc:
            current = getattr(exc, "current", None) or sim.state
            if current in FINAL_STATES:
                raise TransitionError(FINALIZED_MESSAGE) from exc
            raise TransitionError(
                f"The state transition is invalid ('{current}' -> '{requested}'). "
                f"Allowed from '{current}': {_targets(current)}"
            ) from exc
        except ApiError:
            raise
        except Exception as exc:
            raise ApiError(f"Internal server error: {exc}", 500, "General error") from exc
        return sim.state_representation()

    def _wait_for_cleanup(self, sim: Simulation) -> bool:
        """Wait for a stop or failure in progress to end; True once ``sim`` is final and cleaned."""
        bound = self.config.stop_grace + KILL_WAIT + self.config.settings.storage_timeout + 5
        lifecycle = sim.lifecycle
        # ``done_event`` follows the state change, which follows the cleanup.
        return lifecycle is not None and lifecycle.done_event.wait(bound) and sim.state in FINAL_STATES

    def _stop_quietly(self, sim: Simulation, reason: str) -> None:
        try:
            if sim.lifecycle is not None and sim.state not in FINAL_STATES:
                logger.info("Stopping simulation %s (%s)", sim.id, reason)
                sim.lifecycle.command("stopped")
        except Exception as exc:
            logger.info("Simulation %s: stop (%s) not applied: %s", sim.id, reason, exc)
        finally:
            with self._lock:
                self._auto_stopping.discard(sim.id)

    def _watch(self) -> None:
        """Stop simulations idle in ``completed`` too long, and those past their wall-clock limit."""
        while not self._stop.wait(WATCHDOG_PERIOD):
            now = time.monotonic()
            for sim in list(self._simulations.values()):
                if sim.lifecycle is None or sim.state in FINAL_STATES:
                    continue
                reason = None
                if sim.completed_at is not None and sim.state == "completed":
                    if now - sim.completed_at >= self.config.completed_idle_stop:
                        reason = "idle after completion"
                if now - sim.started_at >= self.config.max_lifetime:
                    reason = "maximum lifetime exceeded"
                if reason is None:
                    continue
                with self._lock:
                    if sim.id in self._auto_stopping:
                        continue
                    self._auto_stopping.add(sim.id)
                threading.Thread(
                    target=self._stop_quietly, args=(sim, reason), name=f"SimAutoStop-{sim.id}", daemon=True
                ).start()

    # -- NRP_SIMULATION_DIR ------------------------------------------------------------------------
    def link_simulation_dir(self, sim_dir: Path) -> None:
        """Point ``NRP_SIMULATION_DIR`` at ``sim_dir``; never deletes another simulation's folder.

        Raises:
            ApiError: 500 ``Could not create symlink to temp simulation folder. <err>``.
        """
        link = self.config.simulation_dir_link
        with self._link_lock:
            try:
                link.parent.mkdir(parents=True, exist_ok=True)
                temporary = link.with_name(f".{link.name}.{os.getpid()}.{threading.get_ident()}")
                temporary.unlink(missing_ok=True)
                os.symlink(sim_dir, temporary)
                os.replace(temporary, link)
            except OSError as exc:
                raise ApiError(f"Could not create symlink to temp simulation folder. {exc}", 500) from exc

    def unlink_simulation_dir(self, sim_dir: Path) -> None:
        """Remove ``NRP_SIMULATION_DIR`` if it still points at ``sim_dir``."""
        link = self.config.simulation_dir_link
        with self._link_lock:
            try:
                if link.is_symlink() and Path(os.readlink(link)) == sim_dir:
                    link.unlink()
            except OSError as exc:
                logger.warning("Could not access symlink to temp simulation folder. %s", exc)
