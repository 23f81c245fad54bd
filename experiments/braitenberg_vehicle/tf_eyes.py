"""Transceiver function: what the eyes see becomes the rates of the brain's two Poisson generators."""
from nrp_core import *
from nrp_core.data.nrp_json import *

MAX_RATE = 12000.0   # Hz at full intensity


@EngineDataPack(keyword="sensors", id=DataPackIdentifier("sensors", "vehicle"))
@TransceiverFunction("nest")
def eyes(sensors):
    left = JsonDataPack("left_eye", "nest")
    left.data["rate"] = MAX_RATE * sensors.data["left"]
    right = JsonDataPack("right_eye", "nest")
    right.data["rate"] = MAX_RATE * sensors.data["right"]
    return [left, right]
