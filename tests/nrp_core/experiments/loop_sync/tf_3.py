# ruff: noqa
"""TF of engine_3; uses ``observe`` defined by tf_1.py in the shared function namespace."""

from nrp_core import *


@EngineDataPack(keyword="clock_1", id=DataPackIdentifier("clock", "engine_1"))
@EngineDataPack(keyword="clock_2", id=DataPackIdentifier("clock", "engine_2"))
@EngineDataPack(keyword="kernel", id=DataPackIdentifier("kernel", "engine_3"))
@SimulationTime(keyword="time_ns")
@SimulationIteration(keyword="iteration")
@TransceiverFunction("engine_3")
def count_3(clock_1, clock_2, kernel, time_ns, iteration):
    return observe("tf_3", time_ns, iteration, clock_1, clock_2, kernel)
