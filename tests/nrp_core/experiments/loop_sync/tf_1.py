# ruff: noqa
"""TF of engine_1; also defines the shared ``timeline`` global the other function files use."""

from nrp_core import *
from nrp_core.data.nrp_json import JsonDataPack

timeline = []


def observe(tf_name, time_ns, iteration, clock_1, clock_2, kernel):
    """Record what a TF sees: each engine's reported time (ms) and freshness."""
    timeline.append(
        {
            "tf": tf_name,
            "time_ms": time_ns // 1000000,
            "iteration": iteration,
            "engine_1": [clock_1.data["time"] // 1000000, clock_1.isUpdated(), clock_1.data["received"]],
            "engine_2": [clock_2.data["time"] // 1000000, clock_2.isUpdated(), clock_2.data["received"]],
            "engine_3": [int(kernel.data["biological_time"]), kernel.isUpdated(), kernel.data["received"]],
        }
    )
    sent = JsonDataPack("input", "engine_" + tf_name[-1])
    sent.data["iteration"] = iteration
    return [sent]


@EngineDataPack(keyword="clock_1", id=DataPackIdentifier("clock", "engine_1"))
@EngineDataPack(keyword="clock_2", id=DataPackIdentifier("clock", "engine_2"))
@EngineDataPack(keyword="kernel", id=DataPackIdentifier("kernel", "engine_3"))
@SimulationTime(keyword="time_ns")
@SimulationIteration(keyword="iteration")
@TransceiverFunction("engine_1")
def count_1(clock_1, clock_2, kernel, time_ns, iteration):
    return observe("tf_1", time_ns, iteration, clock_1, clock_2, kernel)
