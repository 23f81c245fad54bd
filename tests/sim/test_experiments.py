"""The bundled simulator experiments run to their timeout and do what they show (issue: done-when list).

Each run uses a short ``SimulationTimeout`` and asserts on the behaviour recorded by the experiment's
datatransfer engine, not just on a clean exit.
"""

from __future__ import annotations

import pytest

from tests.sim.helpers import require


def test_bullet_racecar_oscillates_inside_its_band(run_experiment):
    require("pybullet")
    run = run_experiment("bullet_racecar", "SimulationTimeout=6")
    done, timeout, _ = run.until_timeout()
    assert (done, timeout) == (False, True)
    records = run.records("car_position")
    assert len(records) == 600
    xs = [record["x"] for record in records]
    # It leaves the band on both sides and is sent back each time: bounded, around the origin.
    assert max(xs) > 0.5 and min(xs) < -0.5
    assert max(abs(x) for x in xs) < 0.8
    speeds = [record["speed"] for record in records]
    reversals = sum(1 for before, after in zip(speeds, speeds[1:], strict=False) if before != after)
    assert reversals >= 2


def test_mujoco_pendulum_reaches_its_target_and_follows_a_new_one(run_experiment):
    require("mujoco")
    run = run_experiment("mujoco_pendulum", "SimulationTimeout=10")
    client = run.client
    initial = client.initialize()
    assert {"angle": 0.0, "time": 0.0, "tip": [0.0, 0.0, 0.7], "velocity": 0.0} in initial
    client.run_loop(150)
    client.set_json_datapack("target", "controller", {"angle": -0.5})
    client.run_loop(150)
    records = run.records("pendulum")
    at_first_target = records[149]
    assert at_first_target["angle"] == pytest.approx(1.0, abs=0.02)
    assert abs(at_first_target["velocity"]) < 0.05
    final = records[-1]
    assert final["angle"] == pytest.approx(-0.5, abs=0.02)
    assert abs(final["velocity"]) < 0.05
    # the site reading follows the joint: the tip of a 0.5 m pole hanging from z = 1.2 m
    assert final["tip"][2] == pytest.approx(1.2 - 0.5 * 0.8776, abs=0.02)


def test_gym_cartpole_stays_up_and_repeats(run_experiment):
    require("gymnasium")
    runs = []
    for _ in range(2):
        run = run_experiment("gym_cartpole", "SimulationTimeout=12")
        assert run.until_timeout()[:2] == (False, True)
        run.client.shutdown()
        runs.append(run.records("cartpole"))
    records = runs[0]
    # 600 steps of 20 ms: past CartPole-v1's 500-step truncation, which is not a fall.
    assert len(records) == 600
    assert not any(record["terminated"] for record in records)
    assert records[-1]["terminations"] == 0
    assert max(abs(record["observation"][2]) for record in records) < 0.2095
    assert runs[0] == runs[1]


def test_braitenberg_vehicle_drives_to_the_light(run_experiment):
    require("mujoco", "nest")
    run = run_experiment("braitenberg_vehicle", "SimulationTimeout=7")
    assert run.until_timeout()[:2] == (False, True)
    records = run.records("vehicle")
    start, end = records[0], records[-1]
    assert start["distance"] == pytest.approx(2.5, abs=1e-6)
    assert end["distance"] < start["distance"] - 1.5
    assert min(record["distance"] for record in records) < 0.3
    assert end["spikes_total"] > 0
    # the brain steers: the wheel speeds differ while the light is off-axis at the start
    early = records[10]
    assert early["wheels"][1] > early["wheels"][0]


def test_braitenberg_vehicle_is_repeatable_and_resets(run_experiment):
    require("mujoco", "nest")
    first = run_experiment("braitenberg_vehicle", "SimulationTimeout=1")
    first.until_timeout()
    client = first.client
    fetched_at_reset = client.reset()
    sensors = next(item for item in fetched_at_reset if isinstance(item, dict) and "distance" in item)
    assert sensors["distance"] == pytest.approx(2.5) and sensors["time"] == 0.0
    client.run_until_timeout()
    client.shutdown()
    second = run_experiment("braitenberg_vehicle", "SimulationTimeout=1")
    second.until_timeout()
    second.client.shutdown()
    before_reset_and_after = first.records("vehicle")
    other_run = second.records("vehicle")
    assert len(before_reset_and_after) == 100 and len(other_run) == 50
    # same seed, same brain, same physics: identical runs, and a reset starts the same run again
    assert before_reset_and_after[:50] == other_run

    def without_total(records):  # the function's running total is a TF global, kept across reset
        return [{k: v for k, v in record.items() if k != "spikes_total"} for record in records]

    assert without_total(before_reset_and_after[50:]) == without_total(other_run)


def test_py_sim_engine_in_process(run_experiment):
    require("gymnasium")
    run = run_experiment(
        "gym_cartpole",
        "SimulationTimeout=2",
        'EngineConfigs.0.EngineLaunchCommand={"LaunchType":"InProcess"}',
    )
    assert run.until_timeout()[:2] == (False, True)
    records = run.records("cartpole")
    assert len(records) == 100
    assert not any(record["terminated"] for record in records)


def test_mujoco_engine_in_process_finds_its_model(run_experiment):
    require("mujoco")
    run = run_experiment(
        "mujoco_pendulum",
        "SimulationTimeout=1",
        'EngineConfigs.0.EngineLaunchCommand={"LaunchType":"InProcess"}',
        'EngineConfigs.1.EngineLaunchCommand={"LaunchType":"InProcess"}',
    )
    assert run.until_timeout()[:2] == (False, True)
    records = run.records("pendulum")
    assert len(records) == 100 and records[-1]["angle"] == pytest.approx(1.0, abs=0.05)


def test_nrp_core_bullet_control_example(run_experiment):
    """nrp-core's pysim_examples/bullet_control: a ``Visualizer: true`` config runs headless here."""
    require("pybullet")
    run = run_experiment("bullet_control")
    done, timeout, observations = run.until_timeout()
    assert (done, timeout) == (False, True)
    assert len(observations) == 200  # 2 s at the default 10 ms
    xs = [observation["body"][0] for observation in observations]
    assert xs[0] == 0 and xs[-1] > 0.2  # the positions datapack changes: the car drives forward
    assert all(later >= earlier - 1e-3 for earlier, later in zip(xs, xs[1:], strict=False))
