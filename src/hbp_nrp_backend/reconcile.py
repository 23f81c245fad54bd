"""Recovery at REST server start-up: what a previous run left behind.

:func:`reconcile_leftovers` fails the simulations a previous run left unfinished and has the
executor stop what is left of them (a local Simulation Server is terminated only if its command
line carries their id; a Ray actor is found by its name), upload or spool their logs and remove
their folders; :func:`clear_stale_retained` clears retained lifecycle
messages a crash left on the broker (the shared ``mqtt.clear_retained_matching``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from hbp_nrp_backend.config import BackendConfig
from hbp_nrp_backend.executors import Executor
from hbp_nrp_backend.mqtt_accounts import DynsecAccounts
from hbp_nrp_backend.registry import RUNNING_STATES
from hbp_nrp_backend.simulation import BROKER_TIMEOUT, Simulation
from hbp_nrp_commons import mqtt
from hbp_nrp_commons.mqtt_identity import simulation_user
from hbp_nrp_commons.settings import MqttSettings

logger = logging.getLogger(__name__)

BACKEND_RESTARTED = {"msg": "Backend restarted", "error_type": "Process"}


class Leftovers(Protocol):
    """What reconciliation needs from the manager."""

    config: BackendConfig
    mqtt_accounts: DynsecAccounts | None

    @property
    def executor(self) -> Executor: ...

    def all(self) -> Iterable[Simulation]: ...


def reconcile_leftovers(manager: Leftovers) -> None:
    """Fail every simulation a previous run left unfinished; the executor stops what survived of
    them and saves their logs (a simulation another executor ran is only failed, and that is
    logged), then clears anything else of its own it finds (e.g. Ray actors no simulation owns)."""
    executor = manager.executor
    leftovers, failed = [], []
    for sim in list(manager.all()):
        record = sim.record
        if record.state not in RUNNING_STATES or sim.lifecycle is not None:
            continue
        logger.warning("Simulation %s was left %s by a previous run; failing it", record.id, record.state)
        record.state = "failed"
        record.error = dict(BACKEND_RESTARTED)
        sim.save()
        failed.append(sim)
        if manager.mqtt_accounts is not None:
            manager.mqtt_accounts.delete(simulation_user(manager.config.settings.mqtt.prefix, record.id))
        ran_on = (record.node or {}).get("executor", "local")
        if ran_on == executor.name:
            leftovers.append(sim)
        else:
            logger.warning(
                "Simulation %s ran on the %s executor, this server uses %s (NRP_EXECUTOR): "
                "whatever is left of it there is not stopped from here",
                record.id,
                ran_on,
                executor.name,
            )
    try:
        executor.reconcile(leftovers)
    except Exception:
        logger.exception("Reconciling the simulations of a previous run failed")
    for sim in failed:
        sim.record.token = None
        sim.record.pid = None
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
