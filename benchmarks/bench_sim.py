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
and its share of each step, with NEST's device reads and writes (``GetStatus``/``SetStatus`` on the
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
IN_PROCESS = [
    f'EngineConfigs.{index}.EngineLaunchCommand={{"LaunchType":"InProcess"}}' for index in range(3)
]
class _SimulatorClock:
    """Accumulates the time in-process engines spend inside the simulators' own calls.

    ``seconds``: stepping (``nest.Simulate`` through the NEST engine's ``run_loop``, MuJoCo's
    ``SimulatorManager.run_step``); ``device_seconds``: NEST device reads and writes
    (``NodeCollection.get`` and ``set``, what ``nest.GetStatus``/``SetStatus`` do).
    """

    def __init__(self) -> None:
        self.nest_seconds = 0.0
        self.mujoco_seconds = 0.0
        self.device_seconds = 0.0
        self._depth = 0  # NodeCollection.set calls get: time the outermost call only

    @property
    def seconds(self) -> float:
        return self.nest_seconds + self.mujoco_seconds

    def reset(self) -> None:
        self.nest_seconds = 0.0
        self.mujoco_seconds = 0.0
        self.device_seconds = 0.0

    def _timed(self, function, attribute):  # type: ignore[no-untyped-def]
        clock = self

        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            clock._depth += 1
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                clock._depth -= 1
                if clock._depth == 0:
                    setattr(clock, attribute, getattr(clock, attribute) + time.perf_counter() - start)

        return timed

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        import nest

        from nrp_core.engines.nest_json.server import NestEngineServer
        from nrp_core.engines.py_sim.SimManager import SimulatorManager

        patches = [
            (NestEngineServer, "run_loop", "nest_seconds"),
            (SimulatorManager, "run_step", "mujoco_seconds"),
            (nest.NodeCollection, "get", "device_seconds"),
            (nest.NodeCollection, "set", "device_seconds"),
        ]
        originals = [getattr(owner, name) for owner, name, _ in patches]
        for (owner, name, attribute), original in zip(patches, originals, strict=True):
            setattr(owner, name, self._timed(original, attribute))
        try:
            yield
        finally:
            for (owner, name, _), original in zip(patches, originals, strict=True):
                setattr(owner, name, original)


def _run(neurons: int, overrides: list[str], clock: _SimulatorClock | None) -> float:
    """Seconds per step of ``STEPS`` steps (after initialize and one warm-up step)."""
    from nrp_core import NrpCore

    os.environ["BRAITENBERG_NEURONS"] = str(neurons)
    with tempfile.TemporaryDirectory(prefix="nrp-bench-sim-") as folder:
        experiment = Path(folder) / "braitenberg_vehicle"
        shutil.copytree(EXPERIMENT, experiment, ignore=shutil.ignore_patterns("__pycache__", "data"))
        if overrides:
            # In-process engines run in this process's working directory: tell them the experiment's.
            overrides = overrides + [f'EngineConfigs.{i}.ExperimentDirectory="{experiment}"'
                                     for i in range(3)]
        options = [f"SimulationTimeout={STEPS * STEP_S + 1}", *overrides]
        args = " ".join(f"-o {override}" for override in options)
        client = NrpCore("localhost:5345", experiment_folder=str(experiment), args=args)
        try:
            client.initialize()
            client.run_loop(1)
            if clock is not None:
                clock.reset()
            start = time.perf_counter()
            client.run_loop(STEPS)
            elapsed = time.perf_counter() - start
        finally:
            client.shutdown()
    return elapsed / STEPS


def measure(neurons: int) -> dict[str, float]:
    """The figures for one brain size (medians over ``REPEATS`` alternating runs)."""
    in_process_runs, stepping_runs, device_runs, process_runs, nest_runs = [], [], [], [], []
    for _ in range(REPEATS):
        clock = _SimulatorClock()
        with clock.installed(), open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            in_process_runs.append(_run(neurons, IN_PROCESS, clock))
        stepping_runs.append(clock.seconds / STEPS)
        nest_runs.append(clock.nest_seconds / STEPS)
        device_runs.append(clock.device_seconds / STEPS)
        process_runs.append(_run(neurons, [], None))
    in_process = statistics.median(in_process_runs)
    stepping = statistics.median(stepping_runs)
    devices = statistics.median(device_runs)
    simulators = stepping + devices
    processes = statistics.median(process_runs)
    return {
        "neurons": neurons,
        "stepping_ms": stepping * 1e3,
        "nest_ms": statistics.median(nest_runs) * 1e3,
        "devices_us": devices * 1e6,
        "inprocess_step_ms": in_process * 1e3,
        "inprocess_framework_us": (in_process - simulators) * 1e6,
        "inprocess_share": (in_process - simulators) / in_process,
        "inprocess_share_with_devices": (in_process - stepping) / in_process,
        "inprocess_rtf": STEP_S / in_process,
        "process_step_ms": processes * 1e3,
        "process_framework_us": (processes - simulators) * 1e6,
        "process_share": (processes - simulators) / processes,
        "process_rtf": STEP_S / processes,
    }


def _process_framework(figures: dict[str, float]) -> str:
    if figures["process_framework_us"] <= 0:
        return "not measurable: faster than the serial simulator time (the engines overlapped)"
    return f"~{figures['process_framework_us']:.0f} us/step = {figures['process_share']:.1%} of the step"


def main() -> None:
    os.environ.setdefault("PYNEST_QUIET", "1")
    print(f"Braitenberg vehicle, {STEPS} steps of {STEP_S * 1e3:.0f} ms (MuJoCo body, NEST brain, recorder); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    for neurons in BRAIN_SIZES:
        figures = measure(neurons)
        print(
            f"  {neurons:4d} neurons/population: simulator steps {figures['stepping_ms']:.2f} ms/step "
            f"(NEST {figures['nest_ms']:.2f} ms), NEST device get/set {figures['devices_us']:.0f} us/step\n"
            f"    in-process engines: {figures['inprocess_step_ms']:.2f} ms/step, "
            f"RTF {figures['inprocess_rtf']:.2f}, framework {figures['inprocess_framework_us']:.0f} us/step "
            f"= {figures['inprocess_share']:.1%} of the step "
            f"({figures['inprocess_share_with_devices']:.1%} counting NEST device I/O as framework)\n"
            f"    engine processes:   {figures['process_step_ms']:.2f} ms/step, "
            f"RTF {figures['process_rtf']:.2f}, framework {_process_framework(figures)}"
        )


if __name__ == "__main__":
    main()
