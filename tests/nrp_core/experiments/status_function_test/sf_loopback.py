# ruff: noqa
"""Always done; reports python_1's ``test_data`` (what the client sent it) as raw JSON data."""

from nrp_core import *
from nrp_core.data.nrp_json import JsonRawData


@EngineDataPack(keyword="engine1", id=DataPackIdentifier("datapack_engine1", "python_1"))
@StatusFunction()
def loopback(engine1):
    observation = JsonRawData()
    observation.data["test_data"] = engine1.data["test_data"]
    return True, [observation]
