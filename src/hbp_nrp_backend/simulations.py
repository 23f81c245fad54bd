"""Simulations of one REST server: launch, lookup, access checks, shutdown.

:class:`SimulationManager` owns the registry, the storage client, authentication, the log
uploader and every :class:`~hbp_nrp_backend.simulation.Simulation`. Locking: the launcher's lock
covers only the capacity check and the registration of a new simulation; each simulation's
transitions are serialised by its own lifecycle lock; reading a simulation never takes a lock, so
GET requests never wait for a transition (a stop can take seconds).

Where the rest lives: ``launch.py`` (checks, capacity, record and lifecycle creation, a failed
start), ``simulation.py`` (one simulation: record, lifecycle callbacks, clean-up), ``executors/`` (where
its Simulation Server runs: a local child process or a Ray actor),
``simulation_sync.py`` (its MQTT status and runtime errors), ``reconcile.py`` (restart recovery,
stale retained messages), ``lifecycle.py`` (the backend side of the shared lifecycle),
``state_requests.py`` (requested transitions, the server's own stops), ``watchdog.py`` (auto-stop
of idle completed and over-lifetime simulations).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from hbp_nrp_backend import reconcile, state_requests
from hbp_nrp_backend.auth import Authenticator, IdentityStorage, User
from hbp_nrp_backend.config import BackendConfig
from hbp_nrp_backend.errors import (
    MODIFY_FORBIDDEN,
    SIMULATION_NOT_FOUND,
    VIEW_FORBIDDEN,
    ApiError,
    Forbidden,
    NotFound,
)
from hbp_nrp_backend.executors import Executor
from hbp_nrp_backend.executors.factory import create_executor
from hbp_nrp_backend.launch import Launcher, LaunchRequest
from hbp_nrp_backend.logs import LogStorage, LogUploader
from hbp_nrp_backend.mqtt_accounts import DynsecAccounts
from hbp_nrp_backend.registry import FINAL_STATES, Registry
from hbp_nrp_backend.simulation import FINALIZED_MESSAGE, REQUESTABLE_STATES, ExperimentCloner, Simulation
from hbp_nrp_backend.watchdog import Watchdog
from hbp_nrp_commons import mqtt

logger = logging.getLogger(__name__)

__all__ = [
    "FINALIZED_MESSAGE",
    "REQUESTABLE_STATES",
    "BackendStorage",
    "LaunchRequest",
    "Simulation",
    "SimulationManager",
]


class BackendStorage(IdentityStorage, LogStorage, ExperimentCloner, Protocol):
    """What the REST server needs from the storage client: identities and experiment listings
    (authentication), log uploads (the uploader), experiment clones (each simulation)."""


class SimulationManager:
    """Every simulation of this server, and the services they share.

    Args:
        config: the backend configuration.
        storage: the storage client; built from the settings when ``None``.
    """

    def __init__(self, config: BackendConfig, storage: BackendStorage | None = None) -> None:
        from hbp_nrp_backend.storage_client import StorageClient

        self.config = config
        settings = config.settings
        self.storage: BackendStorage = storage or StorageClient.from_settings(settings)
        self.auth = Authenticator(config.auth, self.storage, config.admin_users, ttl=config.auth_cache_ttl)
        upload_client: LogStorage = storage or StorageClient(
            settings.storage_url, settings.storage_timeout, backoff=()
        )
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
        self.mqtt_accounts: DynsecAccounts | None = None
        if config.mqtt_dynsec:
            self.mqtt_accounts = DynsecAccounts(settings.mqtt, mqtt.client_id(self.node_name, "accounts"))
        self._link_lock = threading.Lock()
        self._simulations: dict[int, Simulation] = {}
        self.executor: Executor = create_executor(config, self)
        self.launcher = Launcher(self)
        self.watchdog = Watchdog(self)
        for record in self.registry.load_all():
            self._simulations[record.id] = Simulation(self, record)

    # -- start-up and shutdown -----------------------------------------------------------------
    def start(self) -> None:
        """Connect the executor, reconcile with a previous run, clear stale retained messages, start
        background threads."""
        self.executor.start_service()
        self.reconcile()
        self.clear_stale_retained()
        self.uploader.start()
        self.watchdog.start()

    def reconcile(self) -> None:
        """Fail every simulation a previous run left unfinished (see :mod:`hbp_nrp_backend.reconcile`)."""
        reconcile.reconcile_leftovers(self)

    def clear_stale_retained(self, listen: float = 0.5) -> None:
        """Clear retained lifecycle messages a crashed run left on the broker (new simulations get them)."""
        reconcile.clear_stale_retained(self.config.settings.mqtt, self.node_name, listen)

    def shutdown(self) -> None:
        """Stop every active simulation as a user stop would (logs uploaded or spooled)."""
        self.watchdog.stop()
        threads = []
        for sim in list(self._simulations.values()):
            if sim.lifecycle is not None and sim.state not in FINAL_STATES:
                thread = threading.Thread(target=self.stop_quietly, args=(sim, "server shutdown"))
                thread.start()
                threads.append(thread)
        for thread in threads:
            thread.join(self.config.stop_grace + 60)
        for sim in list(self._simulations.values()):  # stops already in progress finish too
            if sim.lifecycle is not None:
                sim.cleaned.wait(self.config.stop_grace + 60)
        self.executor.close()
        self.uploader.close()
        if self.mqtt_accounts is not None:
            self.mqtt_accounts.close()
        self.watchdog.join(2)
        self.registry.close()

    @property
    def node_name(self) -> str:
        return mqtt.node_name(self.config.settings.mqtt.prefix, mqtt.BACKEND_NODE)

    def _logs_refused(self, sim_id: int, message: str) -> None:
        """Storage refused a simulation's logs for good: say so in its ``error`` (kept if any)."""
        sim = self._simulations.get(sim_id)
        if sim is not None:
            sim.note_logs_problem(message)

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
        return sum(1 for sim in list(self._simulations.values()) if sim.active)

    def register(self, sim: Simulation) -> None:
        """Add a launched simulation (the launcher calls it under its lock, after its capacity check)."""
        self._simulations[sim.id] = sim

    # -- launch (launch.py) ------------------------------------------------------------------------
    def launch(self, user: User, request: LaunchRequest) -> Simulation:
        """``POST /simulation``: see :meth:`hbp_nrp_backend.launch.Launcher.launch`."""
        return self.launcher.launch(user, request)

    # -- transitions (state_requests.py) ---------------------------------------------------------
    def request_state(self, sim: Simulation, requested: object) -> dict[str, Any]:
        """``PUT /simulation/<id>/state``: see :func:`hbp_nrp_backend.state_requests.request_state`."""
        return state_requests.request_state(sim, requested, self.config)

    def stop_quietly(self, sim: Simulation, reason: str) -> None:
        """Stop ``sim`` if it still runs, only logging a refusal; the watchdog may stop it again after."""
        try:
            state_requests.stop_quietly(sim, reason)
        finally:
            self.watchdog.stop_ended(sim.id)

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
