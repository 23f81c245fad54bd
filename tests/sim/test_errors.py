"""Engine errors fail the simulation with a message naming the engine and the file."""

from __future__ import annotations

import pytest

from tests.sim.helpers import require


def _initialize_error(run) -> str:
    with pytest.raises(RuntimeError) as failure:
        run.client.initialize()
    assert run.client.current_state() == "Failed"
    return str(failure.value)


def test_missing_world_file(run_experiment):
    require("mujoco")
    run = run_experiment("mujoco_pendulum", 'EngineConfigs.0.WorldFileName="model/missing.xml"')
    message = _initialize_error(run)
    assert "mujoco_simulator" in message and "model/missing.xml" in message and "not found" in message


def test_broken_world_file(run_experiment, tmp_path):
    require("mujoco")
    run = run_experiment("mujoco_pendulum", 'EngineConfigs.0.WorldFileName="model/broken.xml"')
    (run.experiment / "model" / "broken.xml").write_text(
        "<mujoco><worldbody><geom type='nonsense'/></worldbody></mujoco>"
    )
    message = _initialize_error(run)
    assert "mujoco_simulator" in message and "model/broken.xml" in message and "nonsense" in message


def test_bullet_model_not_found(run_experiment):
    require("pybullet")
    run = run_experiment("bullet_racecar", 'EngineConfigs.0.WorldFileName="no_such_car.urdf"')
    message = _initialize_error(run)
    assert "bullet_simulator" in message and "no_such_car.urdf" in message


def test_missing_brain_file(run_experiment):
    require("nest", "mujoco")
    run = run_experiment("braitenberg_vehicle", 'EngineConfigs.1.NestInitFileName="no_brain.py"')
    message = _initialize_error(run)
    assert "nest" in message and "no_brain.py" in message and "not found" in message


def test_nest_error_in_brain_script(run_experiment):
    require("nest", "mujoco")
    run = run_experiment("braitenberg_vehicle", 'EngineConfigs.1.NestInitFileName="bad_brain.py"')
    (run.experiment / "bad_brain.py").write_text("import nest\n\nnest.Create('no_such_neuron')\n")
    message = _initialize_error(run)
    assert "nest_json engine 'nest'" in message
    assert "bad_brain.py' line 3" in message and "no_such_neuron" in message


def test_opensim_model_that_does_not_load(run_experiment):
    """A world file OpenSim cannot read: one message naming engine, simulator and file, no traceback."""
    require("opensim")
    run = run_experiment("mujoco_pendulum", 'EngineConfigs.0.Simulator="Opensim"')
    message = _initialize_error(run)
    assert "py_sim engine 'mujoco_simulator' (Opensim, world file 'model/pendulum.xml')" in message
    assert "cannot load the model" in message and "Traceback" not in message
    assert message.count("cannot load the model") == 1
    run.client.shutdown()  # after the failed initialize, shutdown does not raise again
