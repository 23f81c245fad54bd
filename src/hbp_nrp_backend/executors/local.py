"""The local executor: each Simulation Server is a child process of the REST server.

The experiment is cloned into a fresh temporary folder (``nrp.<id>.*``), ``NRP_SIMULATION_DIR``
points at the newest one, and the process is supervised by
:class:`~hbp_nrp_backend.simserver_process.SimulationServerProcess`. At most
``NRP_MAX_SIMULATIONS`` run at once (the launcher checks that).
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hbp_nrp_backend.executors.spawn import SpawnSettings, spawn_simserver
from hbp_nrp_backend.live_logs import read_logs
from hbp_nrp_backend.simserver_process import process_carries_id, terminate_orphan

if TYPE_CHECKING:
    from hbp_nrp_backend.launch import LaunchRequest
    from hbp_nrp_backend.simulation import Simulation, SimulationHost

logger = logging.getLogger(__name__)


def spawn_settings(host: SimulationHost) -> SpawnSettings:
    """The spawn settings of ``host``'s configuration."""
    config = host.config
    settings = config.settings
    return SpawnSettings(
        module=host.simserver_module,
        verbose=config.verbose,
        sandbox=config.sandbox,
        protected=(settings.data_dir, settings.storage.root, config.state_dir),
    )


class LocalExecutor:
    """Simulation Servers as child processes of this REST server."""

    name = "local"

    def __init__(self, host: SimulationHost) -> None:
        self._host = host
        self._node = {"executor": "local", "id": "local", "host": socket.gethostname()}

    def admit(self, token: str | None, request: LaunchRequest) -> Any:
        return None  # NRP_MAX_SIMULATIONS, checked by the launcher, is the capacity

    def release(self, admission: Any) -> None:
        pass

    def start(self, sim: Simulation, admission: Any) -> None:
        host = self._host
        record = sim.record
        sim_dir = Path(tempfile.mkdtemp(prefix=f"nrp.{sim.id}."))
        sim.sim_dir = sim_dir
        record.sim_dir = str(sim_dir)
        record.node = dict(self._node)
        sim.save()
        host.link_simulation_dir(sim_dir)
        host.storage.clone_experiment(record.token or "", record.experiment_id, sim_dir)
        process = spawn_simserver(
            sim_dir,
            sim.id,
            record.main_script,
            record.experiment_configuration,
            spawn_settings(host),
            sim.simserver_environment(host.config.settings.mqtt.address),
            on_exit=sim.process_exited,
        )
        sim.process = process
        record.pid = process.pid
        sim.save()

    def stop(self, sim: Simulation) -> None:
        host = self._host
        record = sim.record
        if sim.process is not None:
            sim.process.terminate(host.config.stop_grace)
            sim.sync.merge_runtime_report()
            if sim.sim_dir is not None:
                host.uploader.archive(
                    sim.sim_dir,
                    sim.id,
                    record.experiment_configuration,
                    record.experiment_id,
                    record.owner,
                    record.token,
                )
        if sim.sim_dir is not None:
            host.unlink_simulation_dir(sim.sim_dir)
            shutil.rmtree(sim.sim_dir, ignore_errors=True)

    def read_logs(
        self, sim: Simulation, name: str | None, tail: int, offset: int
    ) -> list[dict[str, Any]] | None:
        if sim.sim_dir is None:
            return None
        return read_logs(sim.sim_dir, name, tail, offset)

    def reconcile(self, leftovers: Iterable[Simulation]) -> None:
        host = self._host
        for sim in leftovers:
            record = sim.record
            if record.pid and process_carries_id(record.pid, record.id):
                logger.info("Terminating the surviving Simulation Server %s (pid %s)", record.id, record.pid)
                terminate_orphan(record.pid, host.config.stop_grace)
            if sim.sim_dir is not None and sim.sim_dir.is_dir():
                host.uploader.archive(
                    sim.sim_dir,
                    record.id,
                    record.experiment_configuration,
                    record.experiment_id,
                    record.owner,
                    record.token,
                )
                shutil.rmtree(sim.sim_dir, ignore_errors=True)

    def start_service(self) -> None:
        pass

    def close(self) -> None:
        pass
