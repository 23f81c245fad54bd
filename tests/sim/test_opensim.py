"""The py_sim ``Opensim`` simulator on nrp-core's arm26 model: physics, configuration and errors.

The arm model (two joints, six muscles) comes from nrp-core's ``opensim_control`` example. The
reference runs drive the same model with OpenSim's own API, written here independently of the
backend: a ``PrescribedController`` with one constant per muscle, stepped with an ``opensim.Manager``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sim.helpers import require, upstream_example

STEP_NS = 10_000_000
FLEXORS = [0.0, 0.0, 0.0, 0.2, 0.2, 0.2]  # TRIlong TRIlat TRImed | BIClong BICshort BRA
RELAXED = [0.0] * 6


@pytest.fixture
def arm(tmp_path: Path) -> Path:
    require("opensim")
    return upstream_example("pysim_examples/opensim_control", tmp_path) / "arm26" / "arm26_ground_offset.osim"


def manager(world: Path, **config):
    from nrp_core.engines.py_sim import SimulatorManager

    full = {"EngineName": "arm", "Simulator": "Opensim", "WorldFileName": str(world), "EngineTimestep": 0.01}
    full.update(config)
    return SimulatorManager(full)


def reference_run(world: Path, phases: list[tuple[list[float], int]]) -> list[float]:
    """The elbow angle after every 10 ms step, driving the model with OpenSim directly."""
    import opensim as osim

    model = osim.Model(str(world))
    controller = osim.PrescribedController()
    muscles = model.getMuscles()
    constants = []
    for index in range(muscles.getSize()):
        controller.addActuator(muscles.get(index))
        constant = osim.Constant(0.0)
        constants.append(constant)
        controller.prescribeControlForActuator(muscles.get(index).getName(), constant)
    model.addController(controller)
    model.initSystem()
    owned = osim.PrescribedController.safeDownCast(model.getControllerSet().get(0))
    functions = owned.get_ControlFunctions()
    state = model.initializeState()
    state.setTime(0)
    integrator = osim.Manager(model)
    integrator.setIntegratorAccuracy(5e-5)
    integrator.initialize(state)
    elbow = model.getCoordinateSet().get("r_elbow_flex")
    angles, steps = [], 0
    for excitations, count in phases:
        for index, value in enumerate(excitations):
            osim.Constant.safeDownCast(functions.get(index)).setValue(value)
        for _ in range(count):
            steps += 1
            state = integrator.integrate(steps * 0.01)
            angles.append(elbow.getValue(state))
    return angles


def drive(sim, phases: list[tuple[list[float], int]]) -> list[float]:
    angles = []
    for excitations, count in phases:
        for _ in range(count):
            sim.run_step(excitations, STEP_NS)
            angles.append(sim.get_model_property("r_elbow_flex", "Joint"))
    return angles


def test_flexors_flex_the_elbow_and_it_falls_when_relaxed(arm: Path):
    phases = [(FLEXORS, 20), (RELAXED, 60)]
    sim = manager(arm)
    angles = drive(sim, phases)
    assert sim.get_sim_time() == pytest.approx(0.8)
    passive = drive(manager(arm), [(RELAXED, 20)])

    flexed = angles[19]
    assert flexed > passive[-1] + 0.5  # the flexors lift the forearm well above its passive swing
    peak = max(angles)
    assert peak > flexed  # it keeps rising a little (momentum, activation decay) ...
    assert angles[-1] < peak - 1.0  # ... then falls once the muscles relax
    # The same to within what the variable-step integrator's accuracy (5e-5) lets two runs agree on.
    assert angles == pytest.approx(reference_run(arm, phases), abs=0.02)


def test_extensors_and_muscle_order(arm: Path):
    """The action's order is the model's muscle order: exciting only the triceps extends the elbow."""
    sim = manager(arm)
    assert sim.get_model_properties("Muscle") == ["TRIlong", "TRIlat", "TRImed", "BIClong", "BICshort", "BRA"]
    angles = drive(sim, [([0.5, 0.5, 0.5, 0.0, 0.0, 0.0], 30)])
    assert angles[-1] < -0.1
    assert sim.get_model_property("TRIlong", "Muscle") > 0.4 > sim.get_model_property("BIClong", "Muscle")
    by_name = manager(arm)
    action = {"TRIlong": 0.5, "TRIlat": 0.5, "TRImed": 0.5, "BIClong": 0.0, "BICshort": 0.0, "BRA": 0.0}
    assert drive(by_name, [(action, 30)]) == pytest.approx(angles, abs=1e-9)


def test_properties_reset_and_config(arm: Path):
    sim = manager(arm, EngineExtraConfigs={"Integrator accuracy": 1e-4, "Realize state": "Acceleration"})
    assert sim.sim_interface.accuracy == 1e-4
    assert sim.get_model_properties("Joint") == ["offset", "r_shoulder", "r_elbow"]
    assert sim.get_model_all_properties("Joint") == {"r_shoulder_elev": 0.0, "r_elbow_flex": 0.0}
    assert sim.get_model_property("r_elbow", "Joint") == 0.0  # a one-coordinate joint by its name
    first = drive(sim, [(FLEXORS, 2)])
    assert sim.get_model_property("r_elbow_flex", "Velocity") > 0
    forces = sim.get_model_all_properties("Force")
    assert set(forces) == {"TRIlong", "TRIlat", "TRImed", "BIClong", "BICshort", "BRA"}
    assert sim.get_model_property("r_ulna_radius_hand", "Body")[1] > 0
    assert sim.get_sim_time() == pytest.approx(0.02)
    sim.reset()
    assert sim.get_sim_time() == 0.0 and sim.get_model_property("r_elbow_flex", "Joint") == 0.0
    assert drive(sim, [(FLEXORS, 2)]) == pytest.approx(first, abs=1e-4)  # within integrator accuracy
    sim.shutdown()


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda sim: sim.run_step([0.1, 0.2], STEP_NS), "action has 2 excitations, the model has 6 muscles"),
        (lambda sim: sim.run_step({"DELTOID": 1.0}, STEP_NS), "unknown muscle 'DELTOID'"),
        (lambda sim: sim.get_model_property("r_wrist", "Joint"), "unknown joint 'r_wrist'"),
        (lambda sim: sim.get_model_property("hand", "Body"), "unknown body 'hand' (bodies: base, r_humerus"),
        (lambda sim: sim.get_model_property("BIClong", "Link"), "unknown property type 'Link'"),
    ],
)
def test_bad_names_name_engine_file_and_value(arm: Path, call, fragment: str):
    from nrp_core.engines.py_sim.SimManager import SimulatorError

    sim = manager(arm)
    with pytest.raises(SimulatorError) as failure:
        call(sim)
    message = str(failure.value)
    assert message.startswith(f"py_sim engine 'arm' (Opensim, world file '{arm}'): ")
    assert fragment in message


def test_model_and_config_errors(arm: Path, tmp_path: Path):
    from nrp_core.engines.py_sim.SimManager import SimulatorError

    with pytest.raises(SimulatorError, match=r"\(Opensim, world file 'missing.osim'\): model file not found"):
        manager(Path("missing.osim"))
    broken = tmp_path / "broken.osim"
    broken.write_text("<OpenSimDocument><Model name='x'><BodySet><objects><Body>")
    with pytest.raises(SimulatorError, match=r"broken.osim'\): cannot load the model: "):
        manager(broken)
    with pytest.raises(SimulatorError, match="'Realize state' is 'Velocity'; expected one of Dynamics"):
        manager(arm, EngineExtraConfigs={"Realize state": "Velocity"})
    with pytest.raises(SimulatorError, match="'Integrator accuracy' must be a positive number, got 'high'"):
        manager(arm, EngineExtraConfigs={"Integrator accuracy": "high"})


def test_missing_simulator_package(arm: Path, monkeypatch):
    """Without the ``opensim`` package the error says which package to install."""
    import sys

    from nrp_core.engines.py_sim.SimManager import SimulatorError

    monkeypatch.setitem(sys.modules, "opensim", None)  # makes `import opensim` fail
    monkeypatch.delitem(sys.modules, "nrp_core.engines.py_sim.opensim_backend", raising=False)
    with pytest.raises(SimulatorError, match="Simulator Opensim needs the Python package 'opensim'"):
        manager(arm)
