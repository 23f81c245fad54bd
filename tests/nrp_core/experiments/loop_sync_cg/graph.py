# ruff: noqa
"""loop_sync with a computational graph: one functional node per engine instead of one TF each.

Each node reads all three engines, the clock and the iteration, records what it saw in the shared
``timeline`` and sends ``input`` = {"iteration": i} to its own engine.
"""

from nrp_core.event_loop import *
from nrp_core.data.nrp_json import JsonDataPack

timeline = []


def make_node(k):
    @FromEngine(keyword="clock_1", address="/engine_1/clock")
    @FromEngine(keyword="clock_2", address="/engine_2/clock")
    @FromEngine(keyword="kernel", address="/engine_3/kernel")
    @Clock("clock_ms")
    @Iteration("iteration")
    @ToEngine(keyword="sent", address=f"/engine_{k}")
    @FunctionalNode(name=f"node_{k}", outputs=["sent"])
    def node(clock_1, clock_2, kernel, clock_ms, iteration):
        timeline.append(
            {
                "tf": f"tf_{k}",
                "time_ms": clock_ms,
                "iteration": iteration,
                "engine_1": [clock_1.data["time"] // 1000000, clock_1.isUpdated(), clock_1.data["received"]],
                "engine_2": [clock_2.data["time"] // 1000000, clock_2.isUpdated(), clock_2.data["received"]],
                "engine_3": [int(kernel.data["biological_time"]), kernel.isUpdated(), kernel.data["received"]],
            }
        )
        sent = JsonDataPack("input", f"engine_{k}")
        sent.data["iteration"] = iteration
        return [sent]


for k in (1, 2, 3):
    make_node(k)
