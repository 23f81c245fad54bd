"""The Event Loop: the computational graph run at a fixed wall-clock rate; its FTI loop hook.

:class:`EventLoop` follows nrp-core's ``EventLoopInterface::runLoop``: each tick starts, updates the
clock node (milliseconds since this run started) and the iteration node, computes the graph and
sleeps until ``start + timestep``; a run ends when ``stop`` is set or the run's duration has
passed (checked at the start of a tick). A tick later than ``timestep + TimestepWarnThreshold``
logs a warning. Tick periods are kept (:attr:`EventLoop.periods`) to report jitter.

When the experiment also has engines, nrp-core runs an FTI loop next to the Event Loop, as fast as
it can, in which engine nodes replace transceiver functions (its "slave mode"):
:class:`GraphDataPackProcessor` is that hook, also used with ``DataPackProcessor: "cg"`` in a
plain FTI loop, where the graph runs in each batch in ``OUTPUT_DRIVEN`` mode and only the
``ToEngine`` nodes of the engines being synchronized (and the nodes feeding them) execute.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nrp_core.datapacks import DataPackInterface
from nrp_core.event_loop.graph import ComputationalGraph, GraphError
from nrp_core.event_loop.nodes import InputClockNode, InputEngineNode, InputIterationNode, OutputEngineNode

__all__ = ["EventLoop", "GraphDataPackProcessor", "jitter_stats"]

logger = logging.getLogger("nrp_core.event_loop")


def _time_nodes(graph: ComputationalGraph) -> tuple[InputClockNode | None, InputIterationNode | None]:
    clock = graph.node("clock_node")
    iteration = graph.node("iteration_node")
    if clock is not None and not isinstance(clock, InputClockNode):
        raise GraphError(
            "found a node with id 'clock_node', which is reserved for the Clock node", clock.where
        )
    if iteration is not None and not isinstance(iteration, InputIterationNode):
        raise GraphError(
            "found a node with id 'iteration_node', which is reserved for the Iteration node", iteration.where
        )
    return clock, iteration


class GraphDataPackProcessor:
    """The FTI loop's view of the graph: which datapacks to fetch, what to send, when to compute.

    Args:
        graph: the configured graph.
        engine_names: the engines of the FTI loop.
        compute: True when the FTI loop computes the graph (``DataPackProcessor: "cg"``); False when
            an Event Loop does (the FTI loop only feeds engine input nodes and empties engine output
            nodes).
    """

    def __init__(self, graph: ComputationalGraph, engine_names: Iterable[str], compute: bool = True) -> None:
        self.graph = graph
        self.compute = compute
        self.inputs: dict[str, InputEngineNode] = {}
        self.outputs: dict[str, OutputEngineNode] = {}
        for name in engine_names:
            node = graph.node(f"{name}_input")
            if isinstance(node, InputEngineNode):
                self.inputs[name] = node
            node = graph.node(f"{name}_output")
            if isinstance(node, OutputEngineNode):
                if compute:
                    node.set_compute_period(0)  # executed only when its engine is synchronized
                self.outputs[name] = node
        known = set(self.inputs) | set(self.outputs)
        for node in graph.nodes.values():
            if isinstance(node, (InputEngineNode, OutputEngineNode)) and node.engine_name not in known:
                logger.warning(
                    "graph node '%s' (%s) refers to engine '%s', which does not exist",
                    node.id,
                    node.where,
                    node.engine_name,
                )
        self.clock, self.iteration = _time_nodes(graph)

    def close(self) -> None:
        """Release the graph (its MQTT connection, the path its loader added)."""
        graph = self.graph
        graph.shutdown()
        if graph.added_path is not None and graph.added_path in sys.path:
            sys.path.remove(graph.added_path)

    def requested(self) -> dict[str, dict[str, str]]:
        """Per engine, ``{datapack name: type}`` of the datapacks its input node needs."""
        return {name: dict.fromkeys(node.requested(), "") for name, node in self.inputs.items()}

    def set_datapacks(self, engine_name: str, datapacks: Sequence[DataPackInterface]) -> None:
        node = self.inputs.get(engine_name)
        if node is not None:
            node.set_datapacks(datapacks)

    def run_batch(
        self,
        engine_names: Sequence[str],
        time_ns: int,
        iteration: int,
        outgoing: Mapping[str, tuple[dict[str, DataPackInterface], dict[str, DataPackInterface]]],
    ) -> None:
        """Compute the graph for a batch (if this processor computes it) and collect what to send.

        ``outgoing[engine][0]`` is replaced by the datapacks the engine's output node collected:
        unlike transceiver-function outputs, graph outputs are sent once.
        """
        if self.compute:
            for name in engine_names:
                node = self.outputs.get(name)
                if node is not None:
                    node.do_compute = True
            if self.clock is not None:
                self.clock.update(time_ns // 1_000_000)
            if self.iteration is not None:
                self.iteration.update(iteration)
            self.graph.compute()
        for name in engine_names:
            node = self.outputs.get(name)
            if node is not None:
                transceiver = outgoing[name][0]
                transceiver.clear()
                for datapack in node.take_datapacks():
                    transceiver[datapack.name] = datapack


def jitter_stats(periods: Sequence[float], timestep: float) -> dict[str, float]:
    """Tick period deviations from ``timestep`` in ms: ``{"n", "median", "p99", "max"}``."""
    deviations = sorted(abs(p - timestep) * 1e3 for p in periods)
    if not deviations:
        return {"n": 0, "median": 0.0, "p99": 0.0, "max": 0.0}
    n = len(deviations)
    return {
        "n": n,
        "median": deviations[n // 2],
        "p99": deviations[min(n - 1, int(0.99 * n))],
        "max": deviations[-1],
    }


class EventLoop:
    """Run a graph every ``timestep`` seconds of wall time.

    Args:
        graph: the configured graph.
        timestep: tick length (s).
        timeout: ``run_until_timeout``'s duration (s); 0: until stopped.
        warn_threshold: lateness (s) above which a tick logs a warning.
        fti: the FTI loop of the experiment's engines (running its batches in a thread of its own
            while the Event Loop runs), or None.
    """

    def __init__(
        self,
        graph: ComputationalGraph,
        timestep: float = 0.01,
        timeout: float = 0.0,
        warn_threshold: float = 0.001,
        fti: Any = None,
    ) -> None:
        self.graph = graph
        self.timestep = float(timestep)
        self.timeout = float(timeout)
        self.warn_threshold = float(warn_threshold)
        self.fti = fti
        self.clock, self.iteration_node = _time_nodes(graph)
        self.iterations = 0
        self.total_iterations = 0
        self.elapsed_ns = 0  # wall time run so far, over all runs
        self.periods: list[float] = []
        self.keep_periods = 100_000

    @property
    def sim_time(self) -> int:
        """The loop's time in ns: wall time spent running, summed over runs."""
        return self.elapsed_ns

    def run_once(self, current_ms: int) -> None:
        """One tick: time nodes, then one graph cycle."""
        if self.clock is not None:
            self.clock.update(current_ms)
        if self.iteration_node is not None:
            self.iteration_node.update(self.iterations)
        self.graph.compute()

    def run(self, duration: float, stop: threading.Event | None = None) -> None:
        """Tick until ``duration`` seconds have passed (0: until ``stop`` is set)."""
        stop = stop or threading.Event()
        fti_thread, fti_stop, fti_errors = self._start_fti()
        clock = time.perf_counter
        timestep = self.timestep
        limit = self.warn_threshold + timestep
        periods = self.periods
        first_period = len(periods)
        self.iterations = 0
        start = clock()
        last = start
        try:
            while not stop.is_set():
                step_start = clock()
                elapsed = step_start - start
                if duration and elapsed >= duration:
                    break
                if self.iterations:
                    period = step_start - last
                    if len(periods) < self.keep_periods:
                        periods.append(period)
                    if period > limit:
                        logger.warning(
                            "Event Loop can't run at the target frequency. Actual step duration: %.1f (ms). "
                            "Target step duration: %.1f (ms).",
                            period * 1e3,
                            timestep * 1e3,
                        )
                if fti_errors:
                    raise fti_errors[0]
                self.run_once(int(elapsed * 1000))
                last = step_start
                self.iterations += 1
                self.total_iterations += 1
                remaining = step_start + timestep - clock()
                if remaining > 0:
                    stop.wait(remaining)
        finally:
            self.elapsed_ns += int((clock() - start) * 1e9)
            if fti_thread is not None:
                fti_stop.set()
                fti_thread.join()
            stats = jitter_stats(periods[first_period:], timestep)
            logger.info(
                "Event Loop ran %d ticks of %.1f ms in %.3f s; tick period deviation median %.2f ms, "
                "p99 %.2f ms, max %.2f ms",
                self.iterations,
                timestep * 1e3,
                clock() - start,
                stats["median"],
                stats["p99"],
                stats["max"],
            )
        if fti_errors:
            raise fti_errors[0]

    def _start_fti(self) -> tuple[threading.Thread | None, threading.Event, list[BaseException]]:
        fti_stop = threading.Event()
        errors: list[BaseException] = []
        fti = self.fti
        if fti is None:
            return None, fti_stop, errors

        def target() -> None:
            try:
                fti.run(0, fti_stop)
            except BaseException as exc:  # reported by the Event Loop's thread
                errors.append(exc)

        thread = threading.Thread(target=target, name="nrp-core-fti", daemon=True)
        thread.start()
        return thread, fti_stop, errors
