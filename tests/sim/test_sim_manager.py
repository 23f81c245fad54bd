"""``SimulatorManager`` and its simulator backends (MuJoCo, Bullet, Gym), driven directly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sim.helpers import FILES, require

PENDULUM = Path(__file__).resolve().parents[2] / "experiments" / "mujoco_pendulum" / "model" / "pendulum.xml"


def manager(simulator: str, world: str, **extra):
    from nrp_core.engines.py_sim import SimulatorManager

    config = {"EngineName": "engine", "Simulator": simulator, "WorldFileName": world, "EngineTimestep": 0.01}
    config.update(extra)
    return SimulatorManager(config)


def test_unknown_and_later_simulators():
    from nrp_core.engines.py_sim.SimManager import SimulatorError

    with pytest.raises(SimulatorError, match="Simulator Gazebo is not installed"):
        manager("Gazebo", "world.sdf")
    with pytest.raises(SimulatorError, match="stable_baselines3 environments are not supported yet"):
        extra = {"framework": "stable_baselines3", "env_number": 2}
        manager("OpenAI", "CartPole-v1", EngineExtraConfigs=extra)


def test_mujoco_properties_steps_and_reset():
    require("mujoco")
    sim = manager("Mujoco", str(PENDULUM))
    assert sim.get_model_properties("site") == ["tip"]
    assert sim.get_model_properties("actuator") == ["torque"]
    assert sim.get_model_property("tip", "site") == pytest.approx([0.0, 0.0, 0.7])
    assert sim.get_model_property("tip", "site_xpos").tolist() == pytest.approx([0.0, 0.0, 0.7])
    sim.run_step([5.0], 10_000_000)  # 5 substeps of the model's 2 ms
    assert sim.get_sim_time() == pytest.approx(0.01)
    assert sim.get_model_property("torque", "actuator") == [5.0]
    joint = sim.get_model_property("hinge", "joint")
    assert joint["qvel"][0] > 0
    assert sim.get_model_all_properties("sensor")["angle"] == pytest.approx(joint["qpos"])
    with pytest.raises(Exception, match="no body named 'nope'"):
        sim.get_model_property("nope", "body")
    with pytest.raises(Exception, match="unknown property type 'Link'"):
        sim.get_model_property("tip", "Link")
    sim.reset()
    assert sim.get_sim_time() == 0.0
    assert sim.get_model_property("hinge", "joint") == {"qpos": [0.0], "qvel": [0.0]}
    sim.shutdown()


def test_mujoco_timestep_must_be_a_multiple_of_the_model_timestep():
    require("mujoco")
    with pytest.raises(Exception, match=r"EngineTimestep 0.003 s is not a whole multiple .* 0.002 s"):
        manager("Mujoco", str(PENDULUM), EngineTimestep=0.003)


def test_bullet_actions_by_name_and_properties():
    require("pybullet")
    sim = manager("Bullet", "racecar/racecar.urdf", Visualizer=True)  # no display here: DIRECT
    assert "chassis" in sim.get_model_properties("Link")
    assert {"plane", "racecar"} <= set(sim.get_model_properties("Body"))
    wheels = ["left_rear_wheel_joint", "right_rear_wheel_joint"]
    action = {
        "Joint": [
            {"index": w, "controlMode": "VELOCITY_CONTROL", "targetVelocity": 20, "force": 10} for w in wheels
        ]
    }
    for _ in range(50):
        sim.run_step(action, 10_000_000)
    assert sim.get_sim_time() == pytest.approx(0.5)
    assert sim.get_model_property("chassis", "Link")[0][0] > 0.05
    position, velocity, _forces, _torque = sim.get_model_property("left_rear_wheel_joint", "Joint")
    assert velocity == pytest.approx(20, rel=0.1)
    sim.run_step(
        {"Force": [{"link": "chassis", "force": [0, 0, 50]}], "Torque": [{"torque": [0, 0, 1]}]}, 10_000_000
    )
    with pytest.raises(Exception, match="unknown controlMode 'FLY'"):
        sim.run_step({"Joint": [{"index": 2, "controlMode": "FLY"}]}, 10_000_000)
    sim.reset()
    assert sim.get_model_property("chassis", "Link")[0][0] == pytest.approx(0.0, abs=1e-6)
    sim.shutdown()
    sim.shutdown()  # idempotent


def test_gym_properties_seed_and_autoreset():
    require("gymnasium")
    sim = manager("OpenAI", "CartPole-v1", EngineTimestep=0.02, EngineExtraConfigs={"seed": 3})
    first = sim.get_model_property("observation", "Property")
    assert sim.run_step(None, 20_000_000) is False  # no action yet: the environment waits
    assert sim.get_sim_time() == 0.0
    terminated = False
    steps = 0
    while not terminated:  # always pushing right topples the pole
        terminated = sim.run_step(1, 20_000_000)
        steps += 1
    values = sim.get_model_all_properties("Property")
    assert values["doneFlag"] is True and values["terminations"] == 1 and values["episode"] == 1
    assert sim.get_sim_time() == pytest.approx(steps * 0.02)
    sim.reset()
    assert sim.get_model_property("observation", "Property") == first  # same seed, same start
    assert sim.get_model_property("terminations", "Property") == 0
    with pytest.raises(Exception, match="only 'Property'"):
        sim.get_model_property("observation", "Joint")
    sim.shutdown()


def test_world_file_relative_to_the_experiment_directory():
    require("mujoco")
    sim = manager("Mujoco", "model/pendulum.xml", ExperimentDirectory=str(PENDULUM.parents[1]))
    assert sim.get_model_properties("joint") == ["hinge"]
    assert FILES.is_dir()
