# ruff: noqa
"""Requests both engine datapacks so that the runtime fetches them; sends nothing."""

from nrp_core import *


@EngineDataPack(keyword="engine1", id=DataPackIdentifier("datapack_engine1", "python_1"))
@EngineDataPack(keyword="engine2", id=DataPackIdentifier("datapack_engine2", "python_2"))
@TransceiverFunction("python_2")
def request_both(engine1, engine2):
    return []
