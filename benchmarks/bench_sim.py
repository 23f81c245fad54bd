"""Real-time factor and framework cost of the Braitenberg experiment (NEST brain + MuJoCo body).

For each brain size (``BRAITENBERG_NEURONS`` neurons per population) the experiment runs ``STEPS``
loop steps of 20 ms twice, on a fresh copy:

- in-process: every engine ``InProcess``, so the loop thread does all the work serially. The time
  spent inside the simulators (``nest.Simulate`` through the NEST engine's ``run_loop``, MuJoCo's
  ``SimulatorManager.run_step``) is measured around those calls; everything else per step is the
  framework: the loop, the transceiver functions, datapack conversion, the engine scripts' sensor
  code and the datatransfer recording;
- engine processes (the default launch): wall time per step and real-time factor; the framework
  cost is estimated as wall time minus the simulator time measured in-process (the engines of one
  batch run concurrently, so this may be lower than the in-process figure, and on a loaded machine
  process scheduling adds to it).

The two kinds of run alternate ``REPEATS`` times and medians are reported, so that a change in the
machine's load biases both alike.

Reported: real-time factor (simulated s per wall s), simulator ms per step, framework us per step
and its share of each step (wall time, and CPU time of the loop's process, which a loaded machine
inflates less), with NEST's device reads and writes (``GetStatus``/``SetStatus`` on the
registered devices) counted as simulator time and, for comparison, as framework time. Target: with
a NEST step >= 2 ms, the framework share stays < 10%.
Run with ``python -m benchmarks sim``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

EXPERIMENT = Path(__file__).resolve().parent.parent / "experiments" / "braitenberg_vehicle"
STEPS = 200
STEP_S = 0.02
REPEATS = 3  # in-process and engine-process runs alternate; medians are reported
BRAIN_SIZES = (100, 400)
IN_PROCESS = [f'EngineConfigs.{index}.EngineLaunchCommand={{"LaunchType":"InProcess"}}' for index in range(3)]


class _SimulatorClock:
    """Accumulates the wall and CPU time in-process engines spend inside the simulators' own calls.

    Categories: ``nest`` (``nest.Simulate`` through the NEST engine's ``run_loop``), ``mujoco``
    (``SimulatorManager.run_step``) and ``devices`` (NEST device reads and writes:
    ``NodeCollection.get`` and ``set``, what ``nest.GetStatus``/``SetStatus`` do).
    """

    CATEGORIES = ("nest", "mujoco", "devices")

    def __init__(self) -> None:
        self.wall = dict.fromkeys(self.CATEGORIES, 0.0)
        self.cpu = dict.fromkeys(self.CATEGORIES, 0.0)
        self._depth = 0  # NodeCollection.set calls get: time the outermost call only

    def reset(self) -> None:
        for totals in (self.wall, self.cpu):
            for category in totals:
                totals[category] = 0.0

    def _timed(self, function, category):  # type: ignore[no-untyped-def]
        clock = self

        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            clock._depth += 1
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                clock._depth -= 1
                if clock._depth == 0:
                    clock.wall[category] += time.perf_counter() - wall
                    clock.cpu[category] += time.process_time() - cpu

        return timed

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        import nest

        from nrp_core.engines.nest_json.server import NestEngineServer
        from nrp_core.engines.py_sim.SimManager import SimulatorManager

        patches = [
            (NestEngineServer, "run_loop", "nest"),
            (SimulatorManager, "run_step", "mujoco"),
            (nest.NodeCollection, "get", "devices"),
            (nest.NodeCollection, "set", "devices"),
        ]
        originals = [getattr(owner, name) for owner, name, _ in patches]
        for (owner, name, category), original in zip(patches, originals, strict=True):
            setattr(owner, name, self._timed(original, category))
        try:
            yield
        finally:
            for (owner, name, _), original in zip(patches, originals, strict=True):
                setattr(owner, name, original)


def _run(neurons: int, overrides: list[str], clock: _SimulatorClock | None) -> tuple[float, float]:
    """Wall and CPU seconds (this process) per step of ``STEPS`` steps, after a warm-up step."""
    from nrp_core import NrpCore

    os.environ["BRAITENBERG_NEURONS"] = str(neurons)
    with tempfile.TemporaryDirectory(prefix="nrp-bench-sim-") as folder:
        experiment = Path(folder) / "braitenberg_vehicle"
        shutil.copytree(EXPERIMENT, experiment, ignore=shutil.ignore_patterns("__pycache__", "data"))
        options = [f"SimulationTimeout={STEPS * STEP_S + 1}", *overrides]
        args = " ".join(f"-o {override}" for override in options)
        client = NrpCore("localhost:5345", experiment_folder=str(experiment), args=args)
        try:
            client.initialize()
            client.run_loop(1)
            if clock is not None:
                clock.reset()
            wall, cpu = time.perf_counter(), time.process_time()
            client.run_loop(STEPS)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            client.shutdown()
    return wall / STEPS, cpu / STEPS


def measure(neurons: int) -> dict[str, float]:
    """The figures for one brain size (medians over ``REPEATS`` alternating runs)."""
    runs: dict[str, list[float]] = {}

    def keep(**values: float) -> None:
        for key, value in values.items():
            runs.setdefault(key, []).append(value)

    for _ in range(REPEATS):
        clock = _SimulatorClock()
        with clock.installed(), open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            wall, cpu = _run(neurons, IN_PROCESS, clock)
        stepping_wall = clock.wall["nest"] + clock.wall["mujoco"]
        stepping_cpu = clock.cpu["nest"] + clock.cpu["mujoco"]
        keep(
            wall=wall,
            nest=clock.wall["nest"] / STEPS,
            stepping=stepping_wall / STEPS,
            devices=clock.wall["devices"] / STEPS,
            framework_wall=wall - (stepping_wall + clock.wall["devices"]) / STEPS,
            framework_cpu=cpu - (stepping_cpu + clock.cpu["devices"]) / STEPS,
            cpu=cpu,
            process_wall=_run(neurons, [], None)[0],
        )
    figures = {key: statistics.median(values) for key, values in runs.items()}
    simulators = figures["stepping"] + figures["devices"]
    figures["framework_share"] = figures["framework_wall"] / figures["wall"]
    figures["framework_cpu_share"] = figures["framework_cpu"] / figures["cpu"]
    figures["share_with_devices"] = (figures["framework_wall"] + figures["devices"]) / figures["wall"]
    figures["process_framework"] = figures["process_wall"] - simulators
    figures["process_share"] = figures["process_framework"] / figures["process_wall"]
    return figures


def _process_framework(figures: dict[str, float]) -> str:
    if figures["process_framework"] <= 0:
        return "not measurable: faster than the serial simulator time (the engines overlapped)"
    return f"~{figures['process_framework'] * 1e6:.0f} us/step = {figures['process_share']:.1%} of the step"


def main() -> None:
    os.environ.setdefault("PYNEST_QUIET", "1")
    print(
        f"Braitenberg vehicle, {STEPS} steps of {STEP_S * 1e3:.0f} ms (MuJoCo body, NEST brain, recorder); "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"
    )
    for neurons in BRAIN_SIZES:
        f = measure(neurons)
        print(
            f"  {neurons:4d} neurons/population: NEST {f['nest'] * 1e3:.2f} ms/step, NEST + MuJoCo "
            f"{f['stepping'] * 1e3:.2f} ms/step, NEST device get/set {f['devices'] * 1e6:.0f} us/step\n"
            f"    in-process engines: {f['wall'] * 1e3:.2f} ms/step, RTF {STEP_S / f['wall']:.2f}; framework "
            f"{f['framework_wall'] * 1e6:.0f} us/step = {f['framework_share']:.1%} of the step "
            f"({f['share_with_devices']:.1%} counting NEST device I/O as framework); framework CPU time "
            f"{f['framework_cpu'] * 1e6:.0f} us/step = {f['framework_cpu_share']:.1%} of the step's CPU\n"
            f"    engine processes:   {f['process_wall'] * 1e3:.2f} ms/step, "
            f"RTF {STEP_S / f['process_wall']:.2f}; framework {_process_framework(f)}"
        )


if __name__ == "__main__":
    main()
