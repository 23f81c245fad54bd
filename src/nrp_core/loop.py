"""The FTILoop: engine scheduling, datapack pools and the datapack cycle.

Engines sit in a queue ordered by the time their current step ends. One :meth:`FTILoop.run_once`
call (nrp-core's ``runLoop(dt)``) processes every batch of engines whose step ends before
``simTime + dt``; per batch, in engine queue order (nrp-core's): wait for the engines' steps and fetch the
datapacks the functions request from them, run the preprocessing functions, the transceiver
functions and the status function, send each engine its transceiver and client datapacks and
restart it. Engine processes step in parallel with each other and with the loop's own work
between two of their synchronizations.

All times are integer nanoseconds.
"""

from __future__ import annotations

import heapq
import logging
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from nrp_core.config import timeout_to_ns, timestep_to_ns
from nrp_core.data.nrp_json import JsonDataPack
from nrp_core.datapacks import DataPackInterface
from nrp_core.engines.launch import EngineHandle, ExternalProcess, create_engine
from nrp_core.functions import FunctionSet, load_functions

__all__ = ["FTILoop", "trajectory_value"]

logger = logging.getLogger(__name__)

Key = tuple[str, str]


def trajectory_value(item: Any) -> Any:
    """What the client returns for a trajectory item: JSON data as Python objects.

    JSON datapacks and raw data give their data (``None`` for JSON null); an empty placeholder
    gives ``None``; protobuf datapacks and raw data give a copy of their message; anything else is
    returned as is.
    """
    if isinstance(item, DataPackInterface) and item.isEmpty():
        return None
    to_json = getattr(item, "to_json", None)
    if to_json is not None:
        return to_json()
    message = getattr(item, "trajectory_value", None)
    return message() if message is not None else item


class FTILoop:
    """One simulation: its engines, functions, pools, clock and trajectory.

    Build it with :meth:`create` (launches the engines and loads the functions), then call
    :meth:`initialize` once; afterwards :meth:`run_once`, :meth:`run`, :meth:`run_until_timeout`,
    :meth:`reset` in any order, and finally :meth:`shutdown` (always, also after a failure).

    Attributes:
        sim_time: the current simulation time (ns); safe to read from other threads.
        iteration: the batch counter (starts at 0, never reset).
        dt: the loop timestep, the smallest engine timestep (ns).
        timeout_ns: ``SimulationTimeout`` in ns.
        done: the status function's last done flag.
        trajectory: accumulated observations (Python values), cleared when delivered.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        experiment_dir: Path,
        engines: list[EngineHandle],
        functions: FunctionSet,
        graph: Any = None,
    ) -> None:
        self.config = config
        self.experiment_dir = experiment_dir
        self.engines = engines
        self.functions = functions
        names = [engine.name for engine in engines]
        if len(set(names)) != len(names):
            raise ValueError(f"engine names must be unique, got {names}")
        self.dt = min((engine.timestep_ns for engine in engines), default=timestep_to_ns(0.01))
        self.timeout_ns = timeout_to_ns(config.get("SimulationTimeout", 0))
        self.sim_time = 0
        self.iteration = 0
        self.done = False
        self.trajectory: list[Any] = []
        self.engine_pool: dict[Key, DataPackInterface] = {}
        self.preprocessing_pool: dict[Key, DataPackInterface] = {}
        self.transceiver_pool: dict[Key, DataPackInterface] = {}
        self.external_pool: dict[Key, DataPackInterface] = {}
        # Per engine: the datapacks sent to it at each synchronization (transceiver, then client).
        self._outgoing: dict[str, tuple[dict[str, DataPackInterface], dict[str, DataPackInterface]]] = {
            name: ({}, {}) for name in names
        }
        # DataPackProcessor "cg": the graph's hook (nrp_core.event_loop.GraphDataPackProcessor)
        # replaces the functions, which are then an empty set.
        self.graph = graph
        self._requested = graph.requested() if graph is not None else functions.requested()
        for engine_name in self._requested:
            if engine_name not in self._outgoing:
                logger.warning(
                    "functions request datapacks from engine '%s', which does not exist", engine_name
                )
        self._queue: list[tuple[int, int, int]] = []
        self._sequence = 0
        self._fresh: list[DataPackInterface] = []
        self._engine_pools = (self.engine_pool,)
        self._tf_local = (self.preprocessing_pool,)
        self._sf_local = (self.preprocessing_pool, self.transceiver_pool)
        self._plans = [functions.for_engine(name) for name in names]
        self.external_processes: list[ExternalProcess] = []

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        config: Mapping[str, Any],
        experiment_dir: Path,
        engine_configs: Iterable[Mapping[str, Any]],
        output: int | IO[Any] | None = None,
        graph: Any = None,
    ) -> FTILoop:
        """Start ``ExternalProcesses``, launch all engines at once, load the functions, await the engines.

        Args:
            config: the defaulted simulation config.
            experiment_dir: the experiment directory (absolute).
            engine_configs: the type-defaulted engine configs, in config order.
            output: where engine processes write their output (None: inherited).
            graph: the computational graph's hook, which replaces the functions (``cg``).

        On failure every process already started is stopped before the exception propagates.
        """
        engines: list[EngineHandle] = []
        externals: list[ExternalProcess] = []
        try:
            for process_config in config.get("ExternalProcesses") or []:
                external = ExternalProcess(process_config, experiment_dir, output)
                externals.append(external)
                external.start()
            for engine_config in engine_configs:
                engine = create_engine(engine_config, experiment_dir, output)
                engines.append(engine)
                engine.start()
            functions = load_functions(config, experiment_dir) if graph is None else FunctionSet([])
            for engine in engines:
                engine.wait_ready()
            loop = cls(config, experiment_dir, engines, functions, graph)
            loop.external_processes = externals
            return loop
        except BaseException:
            for engine in engines:
                engine.close()
            for external in externals:
                external.stop()
            raise

    # -- initialize / reset / shutdown -------------------------------------------------------------

    def _push(self, due: int, index: int) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (due, self._sequence, index))

    def initialize(self) -> list[Any]:
        """Initialize the engines in config order, queue them at t = 0 and fetch requested datapacks.

        Returns:
            the fetched datapack values (engine config order, then name order); they are also
            the start of the trajectory until it is delivered.
        """
        self.trajectory = []
        for index, engine in enumerate(self.engines):
            fetched = engine.initialize(self._requested.get(engine.name, {}))
            self._push(0, index)
            self.trajectory.extend(trajectory_value(datapack) for datapack in fetched)
        return self.trajectory

    def settle(self) -> None:
        """Wait until every engine has finished its running step (nrp-core ``waitForEngines``)."""
        for engine in self.engines:
            engine.settle()

    def reset(self) -> list[Any]:
        """Reset every engine and restart the simulation at time 0.

        The client datapacks set before the reset are sent with each engine's reset request; then
        all pools, the trajectory and the done flag are cleared and every engine is queued at 0.

        Returns:
            the requested datapacks fetched after the reset (the new trajectory).
        """
        self.settle()
        outgoing = {name: list(external.values()) for name, (_tf, external) in self._outgoing.items()}
        for pool in (self.engine_pool, self.preprocessing_pool, self.transceiver_pool, self.external_pool):
            pool.clear()
        for transceiver, external in self._outgoing.values():
            transceiver.clear()
            external.clear()
        self._fresh.clear()
        self.trajectory = []
        self.done = False
        self._queue = []
        fetched_all: list[Any] = []
        for index, engine in enumerate(self.engines):
            fetched = engine.reset(outgoing.get(engine.name, ()))
            fetched_all.extend(trajectory_value(datapack) for datapack in fetched)
            self._push(0, index)
        self.sim_time = 0
        self.trajectory = fetched_all
        return fetched_all

    def shutdown(self) -> list[Exception]:
        """Send ``shutdown`` to every engine in config order, then stop them all.

        Returns:
            the errors raised while shutting engines down (each also logged); engines are stopped
            whatever happens.
        """
        errors: list[Exception] = []
        try:
            for engine in self.engines:
                try:
                    engine.shutdown()
                except Exception as exc:  # keep going: every engine must be stopped
                    logger.error("%s", exc)
                    errors.append(exc)
        finally:
            for engine in self.engines:
                engine.close()
            for external in self.external_processes:
                external.stop()
            # Only if load_functions() put it there: it may be the user's own (``python main.py``).
            directory = self.functions.added_path
            if directory is not None and directory in sys.path:
                sys.path.remove(directory)
            if self.graph is not None:
                self.graph.close()
        return errors

    # -- client datapacks --------------------------------------------------------------------------

    def set_external(self, datapacks: Iterable[DataPackInterface]) -> None:
        """Merge client datapacks into the external pool (fresh until the next datapack cycle)."""
        for datapack in datapacks:
            outgoing = self._outgoing.get(datapack.engine_name)
            if outgoing is None:
                logger.warning(
                    "datapack '%s' was set for engine '%s', which does not exist; it is never delivered",
                    datapack.name,
                    datapack.engine_name,
                )
            datapack._set_updated(True)
            self.external_pool[(datapack.name, datapack.engine_name)] = datapack
            self._fresh.append(datapack)
            if outgoing is not None:
                outgoing[1][datapack.name] = datapack

    # -- running -----------------------------------------------------------------------------------

    def run_once(self) -> None:
        """Advance the simulation by one loop timestep (nrp-core ``FTILoop::runLoop(dt)``)."""
        stop = self.sim_time + self.dt
        queue = self._queue
        while queue and queue[0][0] < stop:
            self._run_batch(queue)
        self.sim_time = stop

    def _run_batch(self, queue: list[tuple[int, int, int]]) -> None:
        engines = self.engines
        functions = self.functions
        engine_pool = self.engine_pool
        fresh = self._fresh
        now = queue[0][0]
        heappop = heapq.heappop
        batch = [heappop(queue)[2]]
        while queue and queue[0][0] == now:
            batch.append(heappop(queue)[2])
        # Queue order, as nrp-core's multimap: equal due times keep the order engines were queued
        # in (config order at t = 0 and after a reset, then the order of the batches that re-queued
        # them), so the engine that waited longest comes first.
        self.sim_time = now

        # Wait for the steps and fetch the datapacks the functions request.
        graph = self.graph
        for index in batch:
            fetched = engines[index].finish_step()
            if graph is not None:
                graph.set_datapacks(engines[index].name, fetched)
            for datapack in fetched:
                key = (datapack._name, datapack._engine_name)
                if type(datapack) is not JsonDataPack and datapack.isEmpty():
                    previous = engine_pool.get(key)
                    if previous is not None and not previous.isEmpty():
                        continue
                engine_pool[key] = datapack
                fresh.append(datapack)
        context = functions.context
        context.time_ns = now
        context.iteration = self.iteration

        # Preprocessing, then transceiver functions, per batch engine.
        plans = self._plans
        if functions.preprocessing:
            for index in batch:
                for function in plans[index][0]:
                    for datapack in functions.run_datapack_function(function, self._engine_pools, ()):
                        datapack._set_updated(True)
                        self.preprocessing_pool[(datapack.name, datapack.engine_name)] = datapack
                        fresh.append(datapack)
        transceiver_pool = self.transceiver_pool
        outgoing_by_engine = self._outgoing
        for index in batch:
            for function in plans[index][1]:
                for datapack in functions.run_datapack_function(function, self._engine_pools, self._tf_local):
                    datapack._updated = True
                    name, engine_name = datapack._name, datapack._engine_name
                    transceiver_pool[(name, engine_name)] = datapack
                    fresh.append(datapack)
                    outgoing = outgoing_by_engine.get(engine_name)
                    if outgoing is not None:
                        outgoing[0][name] = datapack
                    else:
                        self._warn_unknown_engine(datapack)
        if graph is not None:
            graph.run_batch([engines[i].name for i in batch], now, self.iteration, outgoing_by_engine)
        # Status function.
        if functions.status is not None:
            done, observations = functions.run_status(self._engine_pools, self._sf_local)
            self.done = done
            self.trajectory.extend(trajectory_value(item) for item in observations)

        # Everything is stale after the cycle; isUpdated is not sent to engines.
        for datapack in fresh:
            datapack._updated = False
        fresh.clear()

        # Send datapacks and restart the engines.
        for index in batch:
            engine = engines[index]
            transceiver, external = outgoing_by_engine[engine.name]
            if external:
                to_send = list({**transceiver, **external}.values())
            else:
                to_send = list(transceiver.values())
            timestep = engine.timestep_ns
            run_time = now - engine.engine_time + timestep
            if run_time >= 0:
                engine.begin_step(to_send, run_time)
                due = now + timestep
            else:
                logger.warning(
                    'Engine "%s" is ahead of simulation time by %.9f s',
                    engine.name,
                    (engine.engine_time - now) / 1e9,
                )
                engine.begin_step(to_send, None)
                due = engine.engine_time
            self._sequence += 1
            heapq.heappush(queue, (due, self._sequence, index))
        self.iteration += 1

    def _warn_unknown_engine(self, datapack: DataPackInterface) -> None:
        logger.warning(
            "a transceiver function returned datapack '%s' for engine '%s', which does not exist",
            datapack.name,
            datapack.engine_name,
        )

    def run(self, num_iterations: int, stop: threading.Event | None = None) -> None:
        """Run ``num_iterations`` loop timesteps (0: until ``stop`` is set), then wait for engines."""
        count = 0
        try:
            while (num_iterations == 0 or count < num_iterations) and not (stop and stop.is_set()):
                self.run_once()
                count += 1
        finally:
            self.settle()

    def timed_out(self) -> bool:
        """``SimulationTimeout >= 0 and simTime >= SimulationTimeout``."""
        return self.timeout_ns >= 0 and self.sim_time >= self.timeout_ns

    def run_until_timeout(self, stop: threading.Event | None = None) -> tuple[bool, bool]:
        """Run until the done flag, the timeout or ``stop``; returns ``(done, timeout_flag)``."""
        try:
            while not (stop and stop.is_set()):
                if self.done or self.timed_out():
                    break
                self.run_once()
        finally:
            self.settle()
        return self.done, self.timed_out()

    def take_trajectory(self) -> list[Any]:
        """Deliver the accumulated trajectory and start a new one."""
        trajectory, self.trajectory = self.trajectory, []
        return trajectory
