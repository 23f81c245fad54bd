"""The bundled experiments' ``main_script.py`` (NRP v4 pattern) run through the Simulation Server's
script runner with the in-process nrp-core client, as the Simulation Server runs them."""

from __future__ import annotations

import json

import pytest

from tests.sim.helpers import copy_experiment, read_records, require

CASES = [
    # experiment, simulators, SimulationTimeout (s), loop timestep (s), recorded datapack
    ("bullet_racecar", ("pybullet",), 1.0, 0.01, "car_position"),
    ("mujoco_pendulum", ("mujoco",), 1.0, 0.01, "pendulum"),
    ("gym_cartpole", ("gymnasium",), 1.0, 0.02, "cartpole"),
    ("braitenberg_vehicle", ("mujoco", "nest"), 1.0, 0.02, "vehicle"),
]


@pytest.mark.parametrize(
    ("name", "packages", "timeout", "timestep", "recorded"), CASES, ids=[case[0] for case in CASES]
)
def test_main_script_runs_to_its_timeout(tmp_path, name, packages, timeout, timestep, recorded):
    require(*packages)
    from hbp_nrp_simserver.config import load_experiment_config
    from hbp_nrp_simserver.script_runner import NRPScriptRunner, nrp_core_client_factory

    experiment = copy_experiment(name, tmp_path)
    config_path = experiment / "simulation_config.json"
    document = json.loads(config_path.read_text())
    document["SimulationTimeout"] = timeout
    config_path.write_text(json.dumps(document))

    runner = NRPScriptRunner(
        experiment,
        "main_script.py",
        "0",
        load_experiment_config(config_path),
        client_factory=nrp_core_client_factory(experiment, "simulation_config.json"),
    )
    outcome = []
    try:
        runner.initialize()
        runner.start(outcome.append)
        assert runner.wait(120)
    finally:
        runner.shutdown()
    assert outcome == [None]  # the script ended on NRPSimulationTimeout, without an error
    steps = round(timeout / timestep)
    log = (experiment / "main_script_0.log").read_text()
    assert f"{name}: simulation timeout after {steps} steps" in log
    assert len(read_records(experiment, recorded)) == steps
