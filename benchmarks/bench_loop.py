"""FTILoop overhead on the tf_exchange experiment (2 engines, 1 TF), against a same-run baseline.

Measured, each as the median of a few repetitions of ``STEPS`` steps:

- baseline: a plain Python loop driving the same two engine objects (the ``EngineServer`` instances
  in-process engines use) and calling the same transceiver function directly; for information also
  the same loop calling the two ``Script`` objects directly, without engine servers;
- in-process: ``NrpCore.run_loop(STEPS)`` with both engines ``InProcess``;
- processes: the same with each engine in its own process (the default);
- ``initialize()`` wall time with two engine processes.

Engine ``print`` output goes to a null sink in every run: an in-memory sink for the baseline and
in-process engines, ``/dev/null`` for engine processes. Targets: in-process <= 2x baseline and
< 30 us framework overhead per step; engine processes < 300 us per step; initialize < 0.5 s.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nrp_core.client import NrpCore
from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE, JsonDataPack
from nrp_core.engines.python_json.server_callbacks import EngineServer, load_script_class
from nrp_core.functions import load_functions

EXPERIMENT = Path(__file__).resolve().parent.parent / "experiments" / "tf_exchange"
STEPS = 10_000
REPEATS = 5
TIMESTEP_NS = 10_000_000


class _NullSink(io.TextIOBase):
    """A text stream that drops everything without a system call (``print`` and ``flush`` are free)."""

    def write(self, text: str) -> int:
        return len(text)

    def writable(self) -> bool:
        return True


def _null_stdout() -> contextlib.AbstractContextManager:
    """Engine ``print`` output of in-process engines and of the baseline goes to a :class:`_NullSink`."""
    return contextlib.redirect_stdout(_NullSink())


def _transceiver() -> Callable[..., list]:
    config = {
        "SimulationTimeout": 1,
        "DataPackProcessingFunctions": [{"Name": "tf_1", "FileName": "tf_1.py"}],
    }
    return load_functions(config, EXPERIMENT).transceivers[0].fn


def baseline_per_step(steps: int = STEPS) -> float:
    """Seconds per step of a plain loop over the same engine objects and the same TF function.

    The engine objects are the two ``EngineServer`` instances an in-process run drives: per step
    the loop gets engine 1's datapack, calls the TF, sets its output on engine 2 and steps both.
    """
    servers = []
    for name, script in (("python_1", "engine_1.py"), ("python_2", "engine_2.py")):
        server = EngineServer(EXPERIMENT)
        servers.append((name, script, server))
    transceiver = _transceiver()
    request = {"datapack1": {"engine_name": "python_1", "type": JSON_DATAPACK_TYPE}}
    step = {"time_step": TIMESTEP_NS}
    with _null_stdout():
        for name, script, server in servers:
            server.initialize({"EngineName": name, "PythonFileName": script, "TimeRatio": [1, 1000000000]})
        engine_1, engine_2 = servers[0][2], servers[1][2]
        start = time.perf_counter()
        for _ in range(steps):
            data = engine_1.get_datapacks(request)["datapack1"]["data"]
            datapack = JsonDataPack.from_json("datapack1", "python_1", data)
            outputs = transceiver(datapack_python=datapack)
            engine_2.set_datapacks(
                {
                    dp.name: {"engine_name": dp.engine_name, "type": dp.type, "data": dp.to_json()}
                    for dp in outputs
                }
            )
            engine_1.run_loop(step)
            engine_2.run_loop(step)
        elapsed = time.perf_counter() - start
    return elapsed / steps


def bare_scripts_per_step(steps: int = STEPS) -> float:
    """Seconds per step calling the two ``Script`` objects directly, bypassing even the engine servers."""
    engine_1 = load_script_class(EXPERIMENT / "engine_1.py")()
    engine_2 = load_script_class(EXPERIMENT / "engine_2.py")()
    transceiver = _transceiver()
    with _null_stdout():
        engine_1._name, engine_2._name = "python_1", "python_2"
        engine_1.initialize()
        engine_2.initialize()
        start = time.perf_counter()
        for _ in range(steps):
            datapack = JsonDataPack.from_json("datapack1", "python_1", engine_1._getDataPack("datapack1"))
            for output in transceiver(datapack_python=datapack):
                engine_2._setDataPack(output.name, output.to_json())
            for engine in (engine_1, engine_2):
                engine._advanceTime(TIMESTEP_NS)
                engine.runLoop(TIMESTEP_NS)
        elapsed = time.perf_counter() - start
    return elapsed / steps


def loop_per_step(in_process: bool, steps: int = STEPS) -> tuple[float, float]:
    """``(seconds per step, initialize seconds)`` of ``NrpCore.run_loop(steps)``."""
    overrides = [f"SimulationTimeout={steps}"]
    if in_process:
        overrides += [f'EngineConfigs.{i}.EngineLaunchCommand={{"LaunchType":"InProcess"}}' for i in (0, 1)]
    client = NrpCore(
        "localhost:5345",
        experiment_folder=str(EXPERIMENT),
        args="--logoutput=silent",
        log_output=None,
        overrides=overrides,
    )
    with _null_stdout():
        start = time.perf_counter()
        client.initialize()
        init_time = time.perf_counter() - start
        try:
            start = time.perf_counter()
            client.run_loop(steps)
            elapsed = time.perf_counter() - start
        finally:
            client.shutdown()
    return elapsed / steps, init_time


def main() -> None:
    # Interleave the runs so that machine load drifts affect all variants alike; report the best
    # run of each (the least disturbed one) and the median.
    baseline_runs, bare_runs, in_process_runs, process_runs, init_runs = [], [], [], [], []
    for _ in range(REPEATS):
        baseline_runs.append(baseline_per_step())
        bare_runs.append(bare_scripts_per_step())
        in_process_runs.append(loop_per_step(True)[0])
        per_step, init_time = loop_per_step(False)
        process_runs.append(per_step)
        init_runs.append(init_time)
    baseline, in_process = min(baseline_runs), min(in_process_runs)
    overhead = in_process - baseline
    rows = [
        ("bare scripts (info)", bare_runs, "Script objects called directly, no engine server"),
        ("baseline (plain loop)", baseline_runs, "same EngineServer objects and TF, no framework"),
        ("in-process engines", in_process_runs, f"{in_process / baseline:.2f}x baseline (target <= 2x)"),
        ("engine processes", process_runs, "target < 300 us"),
    ]
    print(f"tf_exchange, {STEPS} steps, best and median of {REPEATS} interleaved runs")
    for label, runs, note in rows:
        median = statistics.median(runs) * 1e6
        print(f"  {label:<24} {min(runs) * 1e6:8.1f} us/step (median {median:.1f})  {note}")
    print(f"  {'framework overhead':<24} {overhead * 1e6:8.1f} us/step  target < 30 us")
    print(
        f"  {'initialize (2 processes)':<24} {min(init_runs) * 1e3:8.1f} ms (median "
        f"{statistics.median(init_runs) * 1e3:.1f})  target < 500 ms"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
