# ruff: noqa
"""Done when python_2 was synchronized in this batch (every second batch, python_2 being 2x slower)."""

from nrp_core import *


@EngineDataPack(keyword="engine1", id=DataPackIdentifier("datapack_engine1", "python_1"))
@EngineDataPack(keyword="engine2", id=DataPackIdentifier("datapack_engine2", "python_2"))
@SimulationIteration(keyword="iteration")
@StatusFunction()
def engine_2_synchronized(engine1, engine2, iteration):
    assert engine1.isUpdated(), f"datapack_engine1 stale in iteration {iteration}"
    assert engine2.isUpdated() == (iteration % 2 == 0), f"datapack_engine2 freshness wrong in {iteration}"
    return engine2.isUpdated(), []
