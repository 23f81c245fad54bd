"""Computational graph overhead and Event Loop tick jitter, against same-run baselines.

1. tf_exchange (2 in-process engines) driven by ``NrpCore.run_loop(STEPS)``, once with its
   transceiver function and once with ``DataPackProcessor: "cg"`` and the equivalent graph
   (``@FromEngine`` -> functional node -> ``@ToEngine``), interleaved ``REPEATS`` times; per-step
   wall and CPU time, best and median. Target: graph <= 2x the TF run.
2. An Event Loop at 10 ms ticking a small graph (clock and iteration nodes, one functional node,
   one output node) for ``TICK_SECONDS``: the deviation of each tick period from 10 ms, median,
   p99 and max over all ticks of ``REPEATS`` runs, interleaved with a bare loop sleeping until
   each tick (the machine's own jitter). Target: p99 < 2 ms.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from nrp_core.client import NrpCore
from nrp_core.event_loop import EventLoop, load_graph
from nrp_core.event_loop.event_loop import jitter_stats

EXPERIMENT = Path(__file__).resolve().parent.parent / "experiments" / "tf_exchange"
STEPS = 5_000
REPEATS = 5
TICK_SECONDS = 3.0
TIMESTEP = 0.01

TF_EXCHANGE_GRAPH = """
from nrp_core.event_loop import *
from nrp_core.data.nrp_json import JsonDataPack


@FromEngine(keyword="datapack_python", address="/python_1/datapack1")
@ToEngine(keyword="forwarded", address="/python_2")
@FunctionalNode(name="forward_clock", outputs=["forwarded"])
def forward_clock(datapack_python):
    forwarded = JsonDataPack("rec_datapack2", "python_2")
    for key in datapack_python.data.keys():
        forwarded.data[key] = datapack_python.data[key]
    return [forwarded]
"""

TICK_GRAPH = """
from nrp_core.event_loop import *
from nrp_core.data.nrp_json import JsonDataPack


@Clock("ms")
@Iteration("it")
@ToEngine("out", "/nowhere")
@FunctionalNode(name="work", outputs=["out"])
def work(ms, it):
    out = JsonDataPack("tick", "nowhere")
    out.data["ms"] = ms
    return [out]
"""


class _NullSink(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)

    def writable(self) -> bool:
        return True


def _experiment(directory: Path) -> Path:
    target = directory / "tf_exchange"
    shutil.copytree(EXPERIMENT, target, ignore=shutil.ignore_patterns("__pycache__", "*.log"))
    (target / "graph.py").write_text(textwrap.dedent(TF_EXCHANGE_GRAPH))
    config = json.loads((target / "simulation_config.json").read_text())
    config["SimulationTimeout"] = STEPS
    for engine in config["EngineConfigs"]:
        engine["EngineLaunchCommand"] = {"LaunchType": "InProcess"}
    (target / "simulation_config.json").write_text(json.dumps(config))
    config["DataPackProcessor"] = "cg"
    config["ComputationalGraph"] = ["graph.py"]
    config["DataPackProcessingFunctions"] = []
    (target / "simulation_config_cg.json").write_text(json.dumps(config))
    return target


def _per_step(experiment: Path, config_file: str) -> tuple[float, float]:
    client = NrpCore(
        "",
        experiment_folder=str(experiment),
        config_file=config_file,
        args="--logoutput=silent",
        log_output=None,
    )
    with contextlib.redirect_stdout(_NullSink()):
        client.initialize()
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            client.run_loop(STEPS)
            return (time.perf_counter() - wall) / STEPS, (time.process_time() - cpu) / STEPS
        finally:
            client.shutdown()


def _ticks(directory: Path) -> list[float]:
    (directory / "ticks.py").write_text(textwrap.dedent(TICK_GRAPH))
    graph = load_graph(["ticks.py"], directory)
    try:
        loop = EventLoop(graph, TIMESTEP)
        loop.run(TICK_SECONDS)
        return loop.periods
    finally:
        graph.shutdown()
        if graph.added_path in sys.path:
            sys.path.remove(graph.added_path)


def _bare_ticks() -> list[float]:
    """The same-run baseline of the jitter: a bare loop sleeping until each tick, no graph."""
    periods = []
    start = last = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now - start >= TICK_SECONDS:
            return periods
        if now > start:
            periods.append(now - last)
        last = now
        remaining = now + TIMESTEP - time.perf_counter()
        if remaining > 0:
            time.sleep(remaining)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        experiment = _experiment(Path(tmp))
        runs: dict[str, list[tuple[float, float]]] = {"tf": [], "cg": []}
        periods: list[float] = []
        bare: list[float] = []
        for _ in range(REPEATS):
            runs["tf"].append(_per_step(experiment, "simulation_config.json"))
            runs["cg"].append(_per_step(experiment, "simulation_config_cg.json"))
            periods.extend(_ticks(Path(tmp)))
            bare.extend(_bare_ticks())

    def best(name: str, index: int) -> float:
        return min(run[index] for run in runs[name]) * 1e6

    def median(name: str, index: int) -> float:
        return statistics.median(run[index] for run in runs[name]) * 1e6

    print(f"tf_exchange in-process, {STEPS} steps, best (median) of {REPEATS} interleaved runs, us per step")
    print(f"  {'':<30} {'wall':>16} {'CPU':>16}")
    for name, label in (("tf", "transceiver function (baseline)"), ("cg", "computational graph")):
        wall = f"{best(name, 0):7.1f} ({median(name, 0):6.1f})"
        cpu = f"{best(name, 1):7.1f} ({median(name, 1):6.1f})"
        print(f"  {label:<30} {wall:>16} {cpu:>16}")
    ratio = median("cg", 1) / median("tf", 1)
    extra = median("cg", 1) - median("tf", 1)
    print(f"  graph / TF: {ratio:.2f}x CPU (medians; target <= 2x), {extra:+.1f} us per step")
    runs = f"{REPEATS} x {TICK_SECONDS:.0f} s interleaved"
    print(f"tick period deviation |period - {TIMESTEP * 1e3:.0f} ms|, {runs}, ms")
    for label, sample in (("Event Loop (target p99 < 2)", periods), ("bare sleep loop (baseline)", bare)):
        stats = jitter_stats(sample, TIMESTEP)
        print(
            f"  {label:<30} {stats['n']:>5} ticks  median {stats['median']:6.3f}  p99 {stats['p99']:7.3f}  "
            f"max {stats['max']:7.3f}"
        )
    sys.stdout.flush()
