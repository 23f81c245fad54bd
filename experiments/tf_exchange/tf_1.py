"""Transceiver function of python_2: forward the clock datapack of python_1 to python_2."""

from nrp_core import *
from nrp_core.data.nrp_json import *


@EngineDataPack(keyword="datapack_python", id=DataPackIdentifier("datapack1", "python_1"))
@TransceiverFunction("python_2")
def forward_clock(datapack_python):
    forwarded = JsonDataPack("rec_datapack2", "python_2")
    for key in datapack_python.data.keys():
        forwarded.data[key] = datapack_python.data[key]
    return [forwarded]
