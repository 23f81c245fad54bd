"""Transceiver function: the controller's torque to the MuJoCo pendulum's actuator."""
from nrp_core import *
from nrp_core.data.nrp_json import *


@EngineDataPack(keyword="torque", id=DataPackIdentifier("torque", "controller"))
@TransceiverFunction("mujoco_simulator")
def to_mujoco(torque):
    command = JsonDataPack("control_cmd", "mujoco_simulator")
    command.data["torque"] = torque.data["torque"]
    return [command]
