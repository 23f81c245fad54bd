"""``brain_devices``: nrp-core's husky and iCub brains, unmodified, in a ``nest_json`` engine.

Their robots need Gazebo, which is not available: a transceiver function stands in for the camera
(it drives the brain's input devices) and a status function reads the output devices the robot's
motor function would read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.sim.helpers import UPSTREAM, require

HUSKY_BRAINS = [
    "husky_braitenberg/braitenberg.py",
    "husky_braitenberg_json/braitenberg.py",
    "visual_tracking_icub/braitenberg.py",
    "event_loop_examples/husky_braitenberg_async/braitenberg.py",
]

# The camera of the husky brains: red seen on one side drives that side's sensors ("lpg" or "rpg").
HUSKY_STIMULUS = """\
from nrp_core import *
from nrp_core.data.nrp_json import *


@TransceiverFunction("nest")
def camera(left={left}, right={right}):
    lpg = JsonDataPack("lpg", "nest")
    rpg = JsonDataPack("rpg", "nest")
    gpg = JsonDataPack("gpg", "nest")
    lpg.data["rate"] = 2000.0 * left
    rpg.data["rate"] = 2000.0 * right
    gpg.data["rate"] = 75.0 * 0.0
    return [lpg, rpg, gpg]
"""

READOUT = """\
from nrp_core import *


@EngineDataPack(keyword="readout", id=DataPackIdentifier("{name}", "nest"))
@StatusFunction()
def readout(readout):
    return False, [[node["V_m"] for node in readout.data.to_json()]]
"""


def _experiment(tmp_path: Path, brain: str, stimulus: str, readout: str) -> Path:
    source = UPSTREAM / "examples" / brain
    if not source.is_file():
        pytest.skip(f"nrp-core's examples are not available (no {brain} in ../shared/upstream/nrp-core)")
    experiment = tmp_path / "experiment"
    experiment.mkdir(parents=True)
    shutil.copy(source, experiment / "brain.py")
    (experiment / "stimulus.py").write_text(stimulus)
    (experiment / "readout.py").write_text(READOUT.format(name=readout))
    config = {
        "SimulationName": "brain_devices",
        "SimulationTimeout": 1.0,
        "EngineConfigs": [
            {
                "EngineType": "nest_json",
                "EngineName": "nest",
                "NestInitFileName": "brain.py",
                "NestRNGSeed": 5,
            }
        ],
        "DataPackProcessingFunctions": [{"Name": "camera", "FileName": "stimulus.py"}],
        "StatusFunction": {"Name": "readout", "FileName": "readout.py"},
    }
    (experiment / "simulation_config.json").write_text(json.dumps(config))
    return experiment


def _run(experiment: Path) -> list[list[float]]:
    from nrp_core import NrpCore

    client = NrpCore("localhost:5345", experiment_folder=str(experiment))
    try:
        client.initialize()
        _done, _timeout, observations = client.run_until_timeout()
    finally:
        client.shutdown()
    return observations


@pytest.mark.parametrize("brain", HUSKY_BRAINS)
def test_husky_brain_turns_towards_red(tmp_path: Path, brain: str):
    """Red on the left excites the right actor more than the left one (the husky turns left), and back."""
    require("nest")
    left = _run(_experiment(tmp_path / "left", brain, HUSKY_STIMULUS.format(left=1.0, right=0.0), "actors"))
    right = _run(_experiment(tmp_path / "right", brain, HUSKY_STIMULUS.format(left=0.0, right=1.0), "actors"))
    assert len(left) == len(right) == 100

    def mean(steps: list[list[float]], actor: int) -> float:
        return sum(step[actor] for step in steps[10:]) / len(steps[10:])

    # the actors' V_m (mV) integrate the spikes of the red-detecting neurons of the other side
    assert mean(left, 1) > 0.01 and mean(left, 1) > 10 * mean(left, 0)
    assert mean(right, 0) > 0.01 and mean(right, 0) > 10 * mean(right, 1)
    assert all(-1.0 < v < 50.0 for step in left + right for v in step)  # integrators, never firing


BASEBALL_STIMULUS = """\
from nrp_core import *
from nrp_core.data.nrp_json import *


@TransceiverFunction("nest")
def camera():
    sensors = JsonDataPack("sensors", "nest")
    for _ in range(20):
        sensors.data.append({{"amplitude": {amplitude}}})
    return [sensors]
"""


def test_baseball_icub_brain_reads_its_sensors(tmp_path: Path):
    """DC current into the sensors raises the motor readout (the iCub's shoulder angle) with it."""
    require("nest")
    brain = "baseball_icub/brain.py"
    stimulus = BASEBALL_STIMULUS.format
    quiet = _run(_experiment(tmp_path / "quiet", brain, stimulus(amplitude=0.0), "motors"))
    driven = _run(_experiment(tmp_path / "driven", brain, stimulus(amplitude=3000.0), "motors"))
    assert quiet[-1] == [0.0]
    assert driven[-1][0] > 1.0


def test_brain_devices_module():
    require("nest")
    from nrp_core.engines.nest_json import brain_devices

    assert {"PoissonSpikeGenerator", "DCSource", "LeakyIntegratorAlpha", "LeakyIntegratorExp"} <= set(
        brain_devices.__all__
    )
