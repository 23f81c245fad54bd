"""The simulation runtimes the graph adds: ``DataPackProcessor: "cg"`` and ``SimulationLoop: "EventLoop"``.

:func:`create_runtime` returns what :class:`nrp_core.client.NrpCore` drives: an
:class:`~nrp_core.loop.FTILoop` (transceiver functions, or the graph when ``DataPackProcessor`` is
``cg``) or an :class:`EventLoopRuntime`, which offers the same methods (``initialize``, ``run``,
``run_until_timeout``, ``reset``, ``shutdown``, ``set_external``, ``take_trajectory``, ``sim_time``,
``done``).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from nrp_core.datapacks import DataPackInterface
from nrp_core.event_loop.event_loop import EventLoop, GraphDataPackProcessor
from nrp_core.event_loop.graph import ComputationalGraph
from nrp_core.event_loop.loader import load_graph
from nrp_core.event_loop.policies import ExecMode

__all__ = ["EventLoopRuntime", "create_runtime", "uses_graph"]

logger = logging.getLogger("nrp_core.event_loop")


_UNSUPPORTED_PROGRAMS = {
    "gzserver": "Gazebo",
    "gzclient": "Gazebo",
    "gazebo": "Gazebo",
    "roslaunch": "ROS",
    "rosrun": "ROS",
    "roscore": "ROS",
}


def check_external_processes(config: Mapping[str, Any]) -> None:
    """Refuse, before anything starts, ``ExternalProcesses`` of simulators we do not support.

    Raises:
        NotImplementedError: naming the program and the feature (Gazebo, ROS).
    """
    for index, process in enumerate(config.get("ExternalProcesses") or []):
        command = str(process.get("ProcCmd", "")).split()
        program = Path(command[0]).name if command else ""
        feature = _UNSUPPORTED_PROGRAMS.get(program)
        if feature is not None:
            raise NotImplementedError(
                f"ExternalProcesses[{index}] runs '{program}': {feature} is not supported"
            )


def uses_graph(config: Mapping[str, Any]) -> bool:
    """True when the experiment runs a computational graph (``cg`` processor or the Event Loop)."""
    return (
        config.get("DataPackProcessor", "tf") == "cg"
        or config.get("SimulationLoop", "FTILoop") == "EventLoop"
    )


def _drop_path(graph: ComputationalGraph) -> None:
    if graph.added_path is not None and graph.added_path in sys.path:
        sys.path.remove(graph.added_path)


def _warn_ignored_functions(config: Mapping[str, Any]) -> None:
    ignored = [f.get("Name", "?") for f in config.get("DataPackProcessingFunctions") or []]
    if config.get("StatusFunction"):
        ignored.append(config["StatusFunction"].get("Name", "?"))
    if ignored:
        logger.warning(
            "the computational graph replaces transceiver, preprocessing and status functions: %s not loaded",
            ", ".join(ignored),
        )


def create_runtime(
    config: Mapping[str, Any],
    experiment_dir: Path,
    engine_configs: list[dict[str, Any]],
    output: int | IO[Any] | None = None,
) -> Any:
    """Build the runtime the configuration asks for (see the module docstring)."""
    from nrp_core.loop import FTILoop

    if uses_graph(config):
        _warn_ignored_functions(config)
    if config.get("SimulationLoop", "FTILoop") == "EventLoop":
        return EventLoopRuntime.create(config, experiment_dir, engine_configs, output)
    if config.get("DataPackProcessor", "tf") != "cg":
        return FTILoop.create(config, experiment_dir, engine_configs, output)
    check_external_processes(config)
    graph = load_graph(
        config.get("ComputationalGraph") or [], experiment_dir, ExecMode.OUTPUT_DRIVEN, config.get("MQTTNode")
    )
    try:
        processor = GraphDataPackProcessor(graph, [c["EngineName"] for c in engine_configs], compute=True)
        loop = FTILoop.create(config, experiment_dir, engine_configs, output, graph=processor)
    except BaseException:
        graph.shutdown()
        _drop_path(graph)
        raise
    return loop


class EventLoopRuntime:
    """An Event Loop, plus an FTI loop in a thread of its own when the experiment has engines.

    ``run(n)`` ticks for ``n`` timesteps of wall time (nrp-core: ``timestep * n``),
    ``run_until_timeout`` for ``EventLoop.Timeout`` (0: until stopped); ``reset`` is not
    implemented, as in nrp-core.
    """

    def __init__(self, config: Mapping[str, Any], event_loop: EventLoop, externals: list[Any]) -> None:
        self.config = config
        self.event_loop = event_loop
        self.graph = event_loop.graph
        self.fti = event_loop.fti
        self.external_processes = externals
        settings = config.get("EventLoop") or {}
        self.timestep = float(settings.get("Timestep", 0.01))
        self.timeout = float(settings.get("Timeout", 0))
        self.done = False
        self.trajectory: list[Any] = []

    @classmethod
    def create(
        cls,
        config: Mapping[str, Any],
        experiment_dir: Path,
        engine_configs: list[dict[str, Any]],
        output: int | IO[Any] | None = None,
    ) -> EventLoopRuntime:
        from nrp_core.engines.launch import ExternalProcess
        from nrp_core.loop import FTILoop

        settings = config.get("EventLoop") or {}
        mode = (
            ExecMode.OUTPUT_DRIVEN if settings.get("ExecutionMode") == "OutputDriven" else ExecMode.ALL_NODES
        )
        check_external_processes(config)
        externals: list[ExternalProcess] = []
        graph: ComputationalGraph | None = None
        try:
            # The graph first (as nrp-core): a graph error fails before any process starts.
            graph = load_graph(
                config.get("ComputationalGraph") or [], experiment_dir, mode, config.get("MQTTNode")
            )
            for process_config in config.get("ExternalProcesses") or []:
                external = ExternalProcess(process_config, experiment_dir, output)
                externals.append(external)
                external.start()
            fti = None
            if engine_configs:
                processor = GraphDataPackProcessor(
                    graph, [c["EngineName"] for c in engine_configs], compute=False
                )
                fti_config = {**config, "ExternalProcesses": []}
                fti = FTILoop.create(fti_config, experiment_dir, engine_configs, output, graph=processor)
            logger.info(
                "Creating Event Loop with configuration: timestep=%d (ms), timeout=%d (ms)",
                int(1000 * float(settings.get("Timestep", 0.01))),
                int(1000 * float(settings.get("Timeout", 0))),
            )
            event_loop = EventLoop(
                graph,
                float(settings.get("Timestep", 0.01)),
                float(settings.get("Timeout", 0)),
                float(settings.get("TimestepWarnThreshold", 0.001)),
                fti,
            )
            return cls(config, event_loop, externals)
        except BaseException:
            if graph is not None:
                graph.shutdown()
                _drop_path(graph)
            for external in externals:
                external.stop()
            raise

    @property
    def sim_time(self) -> int:
        return self.event_loop.sim_time

    def initialize(self) -> list[Any]:
        if self.fti is not None:
            self.fti.initialize()
            self.fti.take_trajectory()
        return []

    def set_external(self, datapacks: Iterable[DataPackInterface]) -> None:
        datapacks = list(datapacks)
        if self.fti is not None:
            self.fti.set_external(datapacks)
        elif datapacks:
            logger.warning("client datapacks are ignored: the Event Loop experiment has no engines")

    def run(self, num_iterations: int, stop: threading.Event | None = None) -> None:
        """Run for ``num_iterations`` timesteps of wall time (0: until ``stop``)."""
        self.event_loop.run(self.timestep * num_iterations, stop)

    def run_until_timeout(self, stop: threading.Event | None = None) -> tuple[bool, bool]:
        """Run for ``EventLoop.Timeout`` seconds (0: until ``stop``); returns ``(done, timed_out)``."""
        self.event_loop.run(self.timeout, stop)
        return False, not (stop is not None and stop.is_set())

    def reset(self) -> list[Any]:
        raise NotImplementedError("Reset is not implemented in the EventLoop")

    def take_trajectory(self) -> list[Any]:
        trajectory, self.trajectory = self.trajectory, []
        return trajectory

    def shutdown(self) -> list[Exception]:
        errors: list[Exception] = []
        try:
            self.graph.shutdown()
        except Exception as exc:  # keep going: engines and processes must stop
            errors.append(exc)
        try:
            if self.fti is not None:
                errors.extend(self.fti.shutdown())
        finally:
            for external in self.external_processes:
                external.stop()
            _drop_path(self.graph)
        return errors
