"""Transceiver function: what the eyes see becomes the rates of the brain's two Poisson generators.

The datapack ``eyes`` is an array with one object per generator node: [left eye, right eye].
"""
from nrp_core import *
from nrp_core.data.nrp_json import *

MAX_RATE = 12000.0   # Hz at full intensity


@EngineDataPack(keyword="sensors", id=DataPackIdentifier("sensors", "vehicle"))
@TransceiverFunction("nest")
def eyes(sensors):
    rates = JsonDataPack("eyes", "nest")
    rates.data.append({"rate": MAX_RATE * sensors.data["left"]})
    rates.data.append({"rate": MAX_RATE * sensors.data["right"]})
    return [rates]
