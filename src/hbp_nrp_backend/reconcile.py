"""Recovery at REST server start-up: what a previous run left behind.

:func:`reconcile_leftovers` fails the simulations a previous run left unfinished (their
Simulation Server is terminated only if its command line carries their id), uploads or spools
their logs and removes their folders; :func:`clear_stale_retained` clears retained lifecycle
messages a crash left on the broker (the shared ``mqtt.clear_retained_matching``).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from typing import Protocol

from hbp_nrp_backend.config import BackendConfig
from hbp_nrp_backend.logs import LogUploader
from hbp_nrp_backend.mqtt_accounts import DynsecAccounts
from hbp_nrp_backend.registry import RUNNING_STATES
from hbp_nrp_backend.simserver_process import process_carries_id, terminate_orphan
from hbp_nrp_backend.simulation import BROKER_TIMEOUT, Simulation
from hbp_nrp_commons import mqtt
from hbp_nrp_commons.mqtt_identity import simulation_user
from hbp_nrp_commons.settings import MqttSettings

logger = logging.getLogger(__name__)

BACKEND_RESTARTED = {"msg": "Backend restarted", "error_type": "Process"}


class Leftovers(Protocol):
    """What reconciliation needs from the manager."""

    config: BackendConfig
    uploader: LogUploader
    mqtt_accounts: DynsecAccounts | None

    def all(self) -> Iterable[Simulation]: ...


def reconcile_leftovers(manager: Leftovers) -> None:
    """Fail every simulation a previous run left unfinished, kill its simserver, save its logs."""
    for sim in list(manager.all()):
        record = sim.record
        if record.state not in RUNNING_STATES or sim.lifecycle is not None:
            continue
        logger.warning("Simulation %s was left %s by a previous run; failing it", record.id, record.state)
        record.state = "failed"
        record.error = dict(BACKEND_RESTARTED)
        sim.save()
        if record.pid and process_carries_id(record.pid, record.id):
            logger.info("Terminating the surviving Simulation Server %s (pid %s)", record.id, record.pid)
            terminate_orphan(record.pid, manager.config.stop_grace)
        if manager.mqtt_accounts is not None:
            manager.mqtt_accounts.delete(simulation_user(manager.config.settings.mqtt.prefix, record.id))
        if sim.sim_dir is not None and sim.sim_dir.is_dir():
            manager.uploader.archive(
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


def clear_stale_retained(settings: MqttSettings, node_name: str, listen: float = 0.5) -> None:
    """Clear retained lifecycle messages a crashed run left on the broker (new simulations get them)."""
    connection = mqtt.MqttConnection(settings, mqtt.client_id(node_name, "cleanup"))
    try:
        connection.connect(BROKER_TIMEOUT)
        mqtt.clear_retained_matching(connection, mqtt.lifecycle_topic(settings.prefix, "+"), settle=listen)
    except mqtt.BrokerUnreachable as exc:
        logger.warning("Could not clear stale lifecycle messages: %s", exc)
    finally:
        connection.close()
