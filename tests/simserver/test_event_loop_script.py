"""A main script driving an Event Loop experiment (``SimulationLoop: "EventLoop"``) through ``nrp``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from hbp_nrp_simserver.config import load_experiment_config
from hbp_nrp_simserver.notifier import Notifier
from hbp_nrp_simserver.script_runner import NRPScriptRunner
from tests.nrp_core.loop_helpers import COUNTING_ENGINE

from .helpers import Finished, make_client, run_to_end, wait_until

GRAPH = """
from nrp_core.event_loop import *
from nrp_core.data.nrp_json import JsonDataPack

ticks = []


@FromEngine("state", "/eng/state")
@Iteration("it")
@ToEngine("out", "/eng")
@FunctionalNode(name="relay", outputs=["out"], exec_policy=node_policies.functional_node.exec_policy.always)
def relay(state, it):
    ticks.append((it, state.data["input"] if state is not None else None))
    sent = JsonDataPack("input", "eng")
    sent.data["it"] = it
    return [sent]
"""


def _experiment(tmp_path: Path, timeout: float) -> Path:
    (tmp_path / "eng.py").write_text(textwrap.dedent(COUNTING_ENGINE))
    (tmp_path / "graph.py").write_text(GRAPH)
    config = {
        "SimulationName": "event_loop_script",
        "SimulationTimeout": timeout,
        "SimulationLoop": "EventLoop",
        "EventLoop": {"Timestep": 0.01, "Timeout": 0},
        "ComputationalGraph": ["graph.py"],
        "EngineConfigs": [
            {
                "EngineType": "python_json",
                "EngineName": "eng",
                "PythonFileName": "eng.py",
                "EngineTimestep": 0.01,
                "EngineLaunchCommand": {"LaunchType": "InProcess"},
            }
        ],
    }
    (tmp_path / "simulation_config.json").write_text(json.dumps(config))
    return tmp_path


def _runner(experiment: Path, script: str) -> NRPScriptRunner:
    (experiment / "main_script.py").write_text(textwrap.dedent(script).lstrip("\n"))
    return NRPScriptRunner(
        experiment,
        "main_script.py",
        "0",
        load_experiment_config(experiment / "simulation_config.json"),
        Notifier("0"),
        client_factory=lambda: make_client(experiment, args=""),
    )


def _ticks(runner: NRPScriptRunner) -> list[Any]:
    loop = runner.wrapper._client._loop  # type: ignore[attr-defined]
    return loop.graph.nodes["relay"].fn.__globals__["ticks"]


def test_run_loop_ticks_the_event_loop_within_the_step_budget(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path, timeout=0.2)
    runner = _runner(
        experiment,
        """
        while True:
            try:
                nrp.run_loop(5)
            except NRPSimulationTimeout:
                break
        file_logger.info("finished after %d steps", nrp.steps)
        """,
    )
    try:
        runner.initialize()
        finished = Finished()
        runner.start(finished)
        assert finished.wait(60) is None
        # The budget is SimulationTimeout / EventLoop.Timestep = 20 steps, run as 4 x run_loop(5).
        assert runner.wrapper.steps == 20
        ticks = _ticks(runner)
        # Each run_loop(5) ticks for 5 timesteps of wall time: at most 5 ticks, at least one.
        assert 4 <= len(ticks) <= 24
        # The FTI loop (engines) runs beside the Event Loop: the engine got what the graph sent.
        assert any(received is not None for _it, received in ticks)
    finally:
        runner.shutdown()
    assert "finished after 20 steps" in (experiment / "main_script_0.log").read_text()


def test_stop_ends_a_script_running_the_event_loop(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path, timeout=1000)
    runner = _runner(experiment, "while True:\n    nrp.run_loop(1)\n")
    try:
        runner.initialize()
        finished = Finished()
        runner.start(finished)
        wait_until(lambda: len(_ticks(runner)) >= 3, timeout=30)
        assert len(_ticks(runner)) >= 3
        assert runner.stop()
        assert finished.wait(30) is None
    finally:
        runner.shutdown()


def test_run_until_timeout_runs_the_event_loop_for_its_timeout(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path, timeout=10)
    config = json.loads((experiment / "simulation_config.json").read_text())
    config["EventLoop"]["Timeout"] = 0.05
    (experiment / "simulation_config.json").write_text(json.dumps(config))
    runner = _runner(
        experiment,
        """
        done, timed_out, trajectory = nrp.run_until_timeout()
        file_logger.info("until timeout: %s %s %s", done, timed_out, trajectory)
        """,
    )
    try:
        runner.initialize()
        finished = Finished()
        runner.start(finished)
        assert finished.wait(60) is None
        assert 1 <= len(_ticks(runner)) <= 6
        assert runner.wrapper.steps >= 5  # steps follow the client's time: >= 50 ms of wall time
    finally:
        runner.shutdown()
    assert "until timeout: False True []" in (experiment / "main_script_0.log").read_text()


def test_stop_ends_run_until_timeout_of_an_endless_event_loop(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path, timeout=1000)
    runner = _runner(experiment, "nrp.run_until_timeout()\n")
    try:
        runner.initialize()
        finished = Finished()
        runner.start(finished)
        wait_until(lambda: len(_ticks(runner)) >= 3, timeout=30)
        assert runner.stop()
        assert finished.wait(30) is None
    finally:
        runner.shutdown()


def test_run_until_timeout_of_the_fti_loop_runs_to_simulation_timeout(runner_factory: Any) -> None:
    runner, notifier = runner_factory(
        """
        done, timed_out, trajectory = nrp.run_until_timeout()
        file_logger.info("steps %d, timed out %s", nrp.steps, timed_out)
        """
    )
    assert run_to_end(runner) is None
    assert notifier.errors == []
    assert runner.wrapper.steps == runner.wrapper.max_timesteps == 100


def test_a_failing_node_is_reported_with_its_name_file_and_line(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path, timeout=10)
    (experiment / "graph.py").write_text(
        GRAPH
        + '\n\n@Iteration("it")\n@FunctionalNode(name="boom", outputs=[])\ndef boom(it):\n    return 1 / 0\n'
    )
    line = (experiment / "graph.py").read_text().splitlines().index("    return 1 / 0") + 1
    runner = _runner(experiment, "nrp.run_loop(5)\n")
    try:
        runner.initialize()
        finished = Finished()
        runner.start(finished)
        error = finished.wait(60)
    finally:
        runner.shutdown()
    assert error is not None
    assert error.msg.startswith(f"boom (graph.py:{line}): ZeroDivisionError"), error.msg
