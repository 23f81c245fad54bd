"""Launching a simulation: ``POST /simulation`` after its body was checked.

:class:`Launcher` checks the capacity (409) and the experiment's access (404), has the executor admit
the launch (its own capacity: 409; the resources it asks for: 400), allocates the id,
creates the record, connects the simulation's lifecycle to MQTT (503 when the broker is
unreachable), registers the simulation with its host and fires ``initialized``, which clones the
experiment and spawns the Simulation Server; a failed start is stored in the simulation's
``error`` and reported as ``launch_failed``. Its lock covers only the capacity check and the
registration of a new simulation.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Protocol

from hbp_nrp_backend import events
from hbp_nrp_backend.auth import Authenticator, User
from hbp_nrp_backend.errors import BROKER_UNREACHABLE, ApiError, Conflict, NotFound, ServiceUnavailable
from hbp_nrp_backend.executors import Executor
from hbp_nrp_backend.lifecycle import BackendSimulationLifecycle
from hbp_nrp_backend.registry import SimulationRecord
from hbp_nrp_backend.simulation import BROKER_TIMEOUT, Simulation, SimulationHost
from hbp_nrp_commons import mqtt

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchRequest:
    """A checked ``POST /simulation`` body."""

    experiment_id: str
    experiment_configuration: str = "simulation_config.json"
    main_script: str = "main_script.py"
    ctx_id: str | None = None


class LaunchHost(SimulationHost, Protocol):
    """What launching needs from the manager, besides what its simulations need."""

    @property
    def auth(self) -> Authenticator: ...

    @property
    def node_name(self) -> str: ...

    def active_count(self) -> int: ...

    @property
    def executor(self) -> Executor: ...

    def register(self, sim: Simulation) -> None: ...


class Launcher:
    """Launches the simulations of ``host``, at most ``NRP_MAX_SIMULATIONS`` active at once.

    Args:
        host: the manager that owns the simulations.
    """

    def __init__(self, host: LaunchHost) -> None:
        self._host = host
        self._lock = threading.Lock()
        self._pending = 0

    def launch(self, user: User, request: LaunchRequest) -> Simulation:
        """``POST /simulation`` after the body was checked.

        Checks the capacity (409) and the experiment's access (404), allocates the id, connects the
        simulation's lifecycle to MQTT (503 when the broker is unreachable), registers the simulation
        and fires ``initialized``, which clones the experiment and spawns the Simulation Server.
        """
        host = self._host
        config = host.config
        limit = config.max_simulations
        with self._lock:
            if host.active_count() + self._pending >= limit:
                raise Conflict(
                    f"Maximum number of simulations reached on this server ({limit}); stop one first"
                )
            self._pending += 1
        admission: object = None
        try:
            if not host.auth.experiment_accessible(user, request.experiment_id, request.ctx_id):
                raise NotFound(f"Experiment {request.experiment_id} not found in storage")
            admission = host.executor.admit(user.token, request)
            sim_id = host.registry.allocate_id()
            prefix = config.settings.mqtt.prefix
            connection = mqtt.MqttConnection(config.settings.mqtt, mqtt.client_id(host.node_name, sim_id))
            record = SimulationRecord(
                id=sim_id,
                experiment_id=request.experiment_id,
                experiment_configuration=request.experiment_configuration,
                main_script=request.main_script,
                owner=user.id,
                ctx_id=request.ctx_id,
                token=user.token,
            )
            sim = Simulation(host, record)
            sim.admission = admission
            sim.connection = connection
            try:
                sim.sync.subscribe(connection)
                lifecycle = BackendSimulationLifecycle(sim, connection, prefix)
                lifecycle.connect(BROKER_TIMEOUT)
            except mqtt.BrokerUnreachable as exc:
                connection.close()
                raise ServiceUnavailable(BROKER_UNREACHABLE) from exc
            sim.lifecycle = lifecycle
            sim.save()
            with self._lock:
                host.register(sim)
        except BaseException:
            host.executor.release(admission)
            raise
        finally:
            with self._lock:
                self._pending -= 1
        try:
            lifecycle.command("initialized")
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
        finally:
            host.executor.release(admission)
            sim.admission = None
        return sim
