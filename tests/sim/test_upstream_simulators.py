"""nrp-core's own OpenSim and OpenSim + TVB examples, run unmodified from a copy.

The examples come from ``../shared/upstream/nrp-core`` (skipped, saying why, when it is absent).
Runs shorter than the examples' ``SimulationTimeout`` use the runtime's ``-o SimulationTimeout=...``
option; the files stay as nrp-core ships them. nrp-core's TVB brain loads the Berlin subject
``QL_20120814`` from ``tvb_data``, which PyPI's ``tvb-data`` lacks: :func:`tvb_data_standin` supplies
it when missing (see its docstring).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim.helpers import require, tvb_data_standin, upstream_example

NRP = [sys.executable, "-m", "nrp_cli"]


def _client(experiment: Path, config: str = "simulation_config.json", *overrides: str):
    from nrp_core import NrpCore

    args = " ".join(f"-o {override}" for override in overrides)
    return NrpCore("localhost:5345", experiment_folder=str(experiment), config_file=config, args=args)


def _run(experiment: Path, config: str = "simulation_config.json", *overrides: str) -> str:
    """Initialize, run until the timeout and shut down; return the engines' output."""
    client = _client(experiment, config, *overrides)
    try:
        client.initialize()
        done, timed_out, _trajectory = client.run_until_timeout()
        assert timed_out and not done
    finally:
        if client.current_state() != "Created":
            client.shutdown()
    return (experiment / ".console_output.log").read_text()


@pytest.fixture
def tvb_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Engine processes inherit our environment: put the TVB connectivity stand-in on their path."""
    require("opensim", "tvb", "tvb_data")
    standin = tvb_data_standin(tmp_path)
    if standin is not None:
        path = os.environ.get("PYTHONPATH", "")
        monkeypatch.setenv("PYTHONPATH", str(standin) + (os.pathsep + path if path else ""))


def test_opensim_control(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    require("opensim")
    experiment = upstream_example("pysim_examples/opensim_control", tmp_path)
    output = _run(experiment)  # its own SimulationTimeout: 10 s (1000 steps)
    assert "OpensimEngine Server is initializing" in output
    assert output.count("Resetting Opensim simulation.") == 4  # client resets every 200 steps
    # "Visualizer": true without a display: said once, then headless
    assert output.count("Visualizer requested but no display is available; running headless") == 1
    assert "Traceback" not in output and "Error" not in output


@pytest.mark.parametrize("config", ["simulation_config.json", "simulation_config_xpra.json"])
def test_opensim_tvb(tmp_path: Path, tvb_path: None, caplog: pytest.LogCaptureFixture, config: str):
    experiment = upstream_example("opensim_tvb", tmp_path)
    output = _run(experiment, config, "SimulationTimeout=1")
    assert "CoSimulator" in output and "OpensimEngine Server is initializing" in output
    assert "Traceback" not in output
    # EngineProcCmd "/usr/xpra-entrypoint.sh python_json_engine.py" names nrp-core's engine program
    assert "not supported yet" not in caplog.text
    assert (experiment / "outputs" / "target.png").is_file()  # the TVB engine's shutdown plots


STATUS = """\
import json
from nrp_core import *


@EngineDataPack(keyword="joints", id=DataPackIdentifier("joints", "opensim"))
@EngineDataPack(keyword="action", id=DataPackIdentifier("action", "tvb"))
@StatusFunction()
def status_function(joints, action):
    with open(TRACE, "a") as trace:
        record = {"joints": joints.data.to_json(), "action": action.data.to_json()["act_list"]}
        trace.write(json.dumps(record) + "\\n")
    return False, []
"""


def test_tvb_drives_the_arm(tmp_path: Path, tvb_path: None):
    """The TVB brain's motor output excites the flexors and the elbow follows it.

    A status function (added to a copy of the configuration) records the arm's joints and the brain's
    commands at every step.
    """
    experiment = upstream_example("opensim_tvb", tmp_path)
    trace_file = experiment / "trace.jsonl"  # functions run in the loop's process: an absolute path
    (experiment / "status.py").write_text(f"TRACE = {str(trace_file)!r}\n" + STATUS)
    config = json.loads((experiment / "simulation_config.json").read_text())
    config["StatusFunction"] = {"Name": "status_function", "FileName": "status.py"}
    (experiment / "traced.json").write_text(json.dumps(config))
    _run(experiment, "traced.json", "SimulationTimeout=2")
    trace = [json.loads(line) for line in trace_file.read_text().splitlines()]
    assert len(trace) >= 190
    elbows = [step["joints"]["elbow"] for step in trace]
    commands = [step["action"][3] for step in trace]  # the brain's voltage for the flexors
    assert max(commands) - min(commands) > 0.1  # the brain's output changes over time ...
    assert max(elbows) - min(elbows) > 0.2  # ... and the arm moves with it
    assert all(step["action"][:3] == [-3.0, -3.0, -3.0] for step in trace[1:])  # extensors stay off


def test_template_opensim_tvb_through_nrp_run(tmp_path: Path, tvb_path: None):
    """``nrp run`` on the template (with its main script; only its SimulationTimeout shortened)."""
    experiment = upstream_example("templates/opensim_tvb", tmp_path)
    config_file = experiment / "simulation_config.json"
    config = json.loads(config_file.read_text())
    config["SimulationTimeout"] = 1
    config_file.write_text(json.dumps(config, indent=4))
    result = subprocess.run(
        [*NRP, "run", str(experiment)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Completed" in result.stdout


@pytest.mark.parametrize(
    "proc_cmd, warned",
    [
        ("/usr/xpra-entrypoint.sh python_json_engine.py", False),  # nrp-core's Xpra wrapper
        ("/usr/local/bin/python_json_engine.py", False),
        ("my_own_engine --fast", True),
    ],
)
def test_engine_proc_cmd_naming_nrp_core_programs(tmp_path: Path, caplog, proc_cmd: str, warned: bool):
    from nrp_core.engines.launch import create_engine

    config = {"EngineType": "py_sim", "EngineName": "arm", "EngineProcCmd": proc_cmd}
    with caplog.at_level("INFO", logger="nrp_core.engines.launch"):
        create_engine(config, tmp_path)
    assert ("is not supported yet and is ignored" in caplog.text) == warned
    assert ("runs this runtime's py_sim engine" in caplog.text) != warned
