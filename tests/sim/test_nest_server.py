"""The ``nest_server`` engine: the brain runs inside NEST Server, with ``nest_json``'s datapack semantics."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim.helpers import require
from tests.sim.test_brain_devices import HUSKY_STIMULUS, _experiment, _run

NEST_SERVER = 'EngineConfigs.1.EngineType="nest_server"'


def _require_nest_server() -> None:
    require("mujoco", "nest", "RestrictedPython", "flask_cors", "waitress")


def test_braitenberg_on_nest_server_behaves_as_on_nest_json(run_experiment):
    """Same seed, same brain: the vehicle's recorded run is identical on both engine types."""
    _require_nest_server()
    on_json = run_experiment("braitenberg_vehicle", "SimulationTimeout=2")
    assert on_json.until_timeout()[:2] == (False, True)
    on_server = run_experiment("braitenberg_vehicle", "SimulationTimeout=2", NEST_SERVER)
    assert on_server.until_timeout()[:2] == (False, True)
    records = on_server.records("vehicle")
    assert len(records) == 100 and records[-1]["spikes_total"] > 0
    assert records == on_json.records("vehicle")


def test_reset_rebuilds_the_brain_in_nest_server(run_experiment):
    _require_nest_server()
    run = run_experiment("braitenberg_vehicle", "SimulationTimeout=0.5", NEST_SERVER)
    run.until_timeout()
    run.client.reset()
    run.client.run_until_timeout()
    run.client.shutdown()
    records = run.records("vehicle")
    assert len(records) == 50

    def without_total(records):  # the function's running total is a TF global, kept across reset
        return [{k: v for k, v in record.items() if k != "spikes_total"} for record in records]

    assert without_total(records[25:]) == without_total(records[:25])


@pytest.fixture
def running_nest_server(tmp_path: Path):
    """A NEST Server started beforehand (port 0: a free port), as ``EmptyLaunchCommand`` expects."""
    _require_nest_server()
    token = secrets.token_hex(16)
    process = subprocess.Popen(
        [sys.executable, "-m", "nrp_core.engines.nest_server.serve", "--port", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(token + "\n")  # its access token, first line of its input
    process.stdin.flush()
    for line in process.stdout:
        if line.startswith("Listening on "):
            break
    else:
        pytest.fail("NEST Server exited before listening")
    port = int(line.rsplit(":", 1)[1])
    try:
        yield port, token
    finally:
        assert process.stdin is not None
        process.stdin.close()  # it exits when its standard input closes
        process.wait(30)


def test_already_running_nest_server(run_experiment, running_nest_server, monkeypatch):
    port, token = running_nest_server
    monkeypatch.setenv("NEST_SERVER_ACCESS_TOKEN", token)
    run = run_experiment(
        "braitenberg_vehicle",
        "SimulationTimeout=0.4",
        NEST_SERVER,
        f"EngineConfigs.1.NestServerPort={port}",
        'EngineConfigs.1.EngineLaunchCommand={"LaunchType":"EmptyLaunchCommand"}',
    )
    assert run.until_timeout()[:2] == (False, True)
    assert len(run.records("vehicle")) == 20


def test_wrong_token_is_refused(run_experiment, running_nest_server, monkeypatch):
    port, _token = running_nest_server
    monkeypatch.setenv("NEST_SERVER_ACCESS_TOKEN", "not-the-token")
    run = run_experiment(
        "braitenberg_vehicle",
        NEST_SERVER,
        f"EngineConfigs.1.NestServerPort={port}",
        'EngineConfigs.1.EngineLaunchCommand={"LaunchType":"EmptyLaunchCommand"}',
    )
    with pytest.raises(
        RuntimeError, match="nest_server engine 'nest': initialize failed in NEST Server: forbidden"
    ):
        run.client.initialize()


def test_brain_error_names_engine_file_and_line(run_experiment):
    _require_nest_server()
    run = run_experiment(
        "braitenberg_vehicle", NEST_SERVER, 'EngineConfigs.1.NestInitFileName="bad_brain.py"'
    )
    (run.experiment / "bad_brain.py").write_text("import nest\n\nnest.Create('no_such_neuron')\n")
    with pytest.raises(RuntimeError) as failure:
        run.client.initialize()
    message = str(failure.value)
    assert "nest_server engine 'nest'" in message
    assert "bad_brain.py' line 3" in message and "no_such_neuron" in message


def test_nrp_core_nest_server_brain_with_populations(tmp_path: Path):
    """nrp-core's husky brain for NEST Server (``populations`` dict, ``nest_server.brain_devices``)."""
    _require_nest_server()
    brain = "husky_braitenberg/braitenberg_nest_server.py"
    experiment = _experiment(tmp_path, brain, HUSKY_STIMULUS.format(left=1.0, right=0.0), "actors")
    config_file = experiment / "simulation_config.json"
    config = json.loads(config_file.read_text())
    config["EngineConfigs"][0]["EngineType"] = "nest_server"
    config_file.write_text(json.dumps(config))
    steps = _run(experiment)
    assert len(steps) == 100
    left_actor = sum(step[0] for step in steps) / len(steps)
    right_actor = sum(step[1] for step in steps) / len(steps)
    assert right_actor > 0.01 and right_actor > 10 * left_actor  # red on the left: the husky turns left
