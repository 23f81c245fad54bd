"""Transceiver function: pendulum joint state from MuJoCo to the controller engine (and the recorder)."""
from nrp_core import *
from nrp_core.data.nrp_json import *


@EngineDataPack(keyword="joint_state", id=DataPackIdentifier("joint_state", "mujoco_simulator"))
@TransceiverFunction("controller")
def to_controller(joint_state):
    state = JsonDataPack("joint_state", "controller")
    state.data["angle"] = joint_state.data["angle"]
    state.data["velocity"] = joint_state.data["velocity"]
    record = JsonDataPack("pendulum", "datatransfer_engine")
    record.data["t"] = joint_state.data["time"]
    record.data["angle"] = joint_state.data["angle"]
    record.data["velocity"] = joint_state.data["velocity"]
    record.data["tip"] = joint_state.data["tip"]
    return [state, record]
