"""End to end with real simulators: the bundled PyBullet, MuJoCo, Gymnasium and NEST experiments run
through the REST server, a Simulation Server and engine processes to completion; the assertions are
on the behaviour recorded by their datatransfer engine, read back from the uploaded log zip, and on
the datapacks it streamed over MQTT."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import nrp_experiments
from tests.e2e.conftest import System
from tests.helpers.waiting import HANG, wait_until


def _records(archive: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    files = [n for n in archive.namelist() if n.startswith("data/") and n.endswith(f"/{name}.data")]
    assert len(files) == 1, archive.namelist()
    return [json.loads(line)["data"] for line in archive.read(files[0]).decode().splitlines() if line]


def _racecar(records: list[dict[str, Any]]) -> None:
    xs = [r["x"] for r in records]
    assert max(xs) > 0.5 and min(xs) < -0.5 and max(abs(x) for x in xs) < 0.8


def _pendulum(records: list[dict[str, Any]]) -> None:
    assert records[-1]["angle"] == pytest.approx(1.0, abs=0.02)


def _cartpole(records: list[dict[str, Any]]) -> None:
    assert not any(r["terminated"] for r in records) and records[-1]["terminations"] == 0


def _braitenberg(records: list[dict[str, Any]]) -> None:
    assert records[-1]["distance"] < records[0]["distance"] - 1.5
    assert records[-1]["spikes_total"] > 0


CASES = {
    # experiment: (simulator packages, SimulationTimeout, recorded datapack, steps, behaviour check)
    "bullet_racecar": (("pybullet",), 6, "car_position", 600, _racecar),
    "mujoco_pendulum": (("mujoco",), 2, "pendulum", 200, _pendulum),
    "gym_cartpole": (("gymnasium",), 4, "cartpole", 200, _cartpole),
    "braitenberg_vehicle": (("mujoco", "nest"), 7, "vehicle", 350, _braitenberg),
}


def _require(packages: tuple[str, ...]) -> None:
    """Skip only when a simulator package is truly absent (CI installs them all)."""
    for package in packages:
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed")


def _bundled_copy(name: str, target: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of bundled experiment ``name`` at ``target`` with its config changed by ``edit``."""
    shutil.copytree(
        nrp_experiments.bundled_experiments_dir() / name,
        target,
        ignore=shutil.ignore_patterns("__pycache__", "data", "*.log"),
    )
    config_file = target / "simulation_config.json"
    config = json.loads(config_file.read_text())
    edit(config)
    config_file.write_text(json.dumps(config, indent=2))
    return target


# The simulators are exercised on one broker kind (the embedded one); the broker itself is tested with
# every kind in test_simulation_lifecycle.py.
ONE_BROKER = pytest.mark.parametrize("_mqtt_broker_process", ["amqtt"], indirect=True)


@ONE_BROKER
@pytest.mark.parametrize("name", list(CASES))
def test_simulator_experiment_through_rest(system: System, tmp_path: Path, name: str) -> None:
    packages, timeout, recorded, steps, check = CASES[name]
    _require(packages)
    experiment = f"e2e_sim_{name}"
    source = _bundled_copy(
        name, tmp_path / experiment, lambda config: config.update(SimulationTimeout=timeout)
    )
    system.storage.client().upload_experiment(system.storage.alice, experiment, source)

    rest = system.start_backend().rest
    sim_id = rest.launch(experiment)["simulationID"]
    rest.wait_for(sim_id, lambda sim: bool(sim["ready"]))
    assert rest.set_state(sim_id, "started").status_code == 200
    sim = rest.wait_for(sim_id, lambda sim: sim["state"] in ("completed", "failed"), timeout=2 * HANG)
    assert sim["state"] == "completed" and sim["error"] is None, sim
    assert rest.set_state(sim_id, "stopped").status_code == 200

    zips = wait_until(lambda: system.storage.log_zips(experiment), HANG, "logs not uploaded")
    data = system.storage.client().get_file(system.storage.alice, experiment, zips[-1], by_name=True)
    archive = zipfile.ZipFile(io.BytesIO(data))
    script_log = archive.read(f"main_script_{sim_id}.log").decode()
    assert f"simulation timeout after {steps} steps" in script_log
    records = _records(archive, recorded)
    assert len(records) == steps
    check(records)

    # the datatransfer engine streamed the datapack on the simulation's data topic
    topic = f"{system.prefix}/nrp_simulation/{sim_id}/data/{recorded}"
    streamed = [m for m in system.watcher.messages if m[1] == topic]
    assert streamed, f"nothing on {topic}"
    assert json.loads(streamed[-1][2]).keys() == records[-1].keys()


ERRORS = {
    # experiment, packages, config change, expected fragments of the REST error message
    "missing_world": (
        "mujoco_pendulum",
        ("mujoco",),
        (0, "WorldFileName", "model/missing.xml"),
        ["mujoco_simulator", "model/missing.xml"],
    ),
    "nest_error": (
        "braitenberg_vehicle",
        ("mujoco", "nest"),
        (1, "NestInitFileName", "bad_brain.py"),
        ["nest_json engine 'nest'", "bad_brain.py' line 2", "no_such_neuron"],
    ),
}


@ONE_BROKER
@pytest.mark.parametrize("case", list(ERRORS))
def test_simulator_engine_error_fails_the_simulation(system: System, tmp_path: Path, case: str) -> None:
    name, packages, (index, key, value), fragments = ERRORS[case]
    _require(packages)
    experiment = f"e2e_sim_error_{case}"
    source = _bundled_copy(
        name, tmp_path / experiment, lambda config: config["EngineConfigs"][index].update({key: value})
    )
    (source / "bad_brain.py").write_text("import nest\nnest.Create('no_such_neuron')\n")
    system.storage.client().upload_experiment(system.storage.alice, experiment, source)

    rest = system.start_backend().rest
    sim_id = rest.launch(experiment)["simulationID"]
    sim = rest.wait_for(sim_id, lambda s: s["state"] == "failed")
    assert sim["error"]["error_type"] == "Loading"
    for fragment in fragments:
        assert fragment in sim["error"]["msg"], sim["error"]


@ONE_BROKER
def test_upstream_opensim_tvb_template_through_rest(system: System, tmp_path: Path) -> None:
    """nrp-core's ``templates/opensim_tvb`` (OpenSim arm, TVB brain, main script) through the REST server.

    Only its SimulationTimeout is shortened; the TVB connectivity stand-in goes on the engines' path
    when PyPI's tvb-data lacks the example's Berlin subject (see ``tests/sim/helpers.py``).
    """
    from tests.sim.helpers import tvb_data_standin, upstream_example

    _require(("opensim", "tvb", "tvb_data"))
    experiment = "e2e_upstream_opensim_tvb"
    source = upstream_example("templates/opensim_tvb", tmp_path / "upstream")
    config_file = source / "simulation_config.json"
    config = json.loads(config_file.read_text())
    config["SimulationTimeout"] = 1
    config_file.write_text(json.dumps(config, indent=4))
    system.storage.client().upload_experiment(system.storage.alice, experiment, source)

    standin = tvb_data_standin(tmp_path)
    # the stand-in lives in this test's temporary folder, which a sandboxed simulation cannot see
    env = {"PYTHONPATH": str(standin), "NRP_SANDBOX": "none"} if standin is not None else {}
    rest = system.start_backend(**env).rest
    sim_id = rest.launch(experiment)["simulationID"]
    rest.wait_for(sim_id, lambda sim: bool(sim["ready"]), timeout=120)
    assert rest.set_state(sim_id, "started").status_code == 200
    sim = rest.wait_for(sim_id, lambda sim: sim["state"] in ("completed", "failed"), timeout=180)
    assert sim["state"] == "completed" and sim["error"] is None, sim
    assert rest.set_state(sim_id, "stopped").status_code == 200

    zips = wait_until(lambda: system.storage.log_zips(experiment), 20, "logs not uploaded")
    data = system.storage.client().get_file(system.storage.alice, experiment, zips[-1], by_name=True)
    script_log = zipfile.ZipFile(io.BytesIO(data)).read(f"main_script_{sim_id}.log").decode()
    assert "NRPSimulationTimeout reached in script" in script_log  # the template's main script
