# ruff: noqa: F403, F405 - nrp-core function files use star imports
import math

from nrp_core import *
from nrp_core.data.nrp_json import *


def rates_at(t_ns):
    t = t_ns * 1e-9
    return [10000.0 + 5000.0 * math.sin(10 * t), 10000.0 + 5000.0 * math.cos(10 * t)]


@EngineDataPack(keyword="voltage", id=DataPackIdentifier("voltage", "nest"))
@SimulationTime(keyword="t_ns")
@TransceiverFunction("nest")
def transceiver_function(voltage, t_ns):
    noise = JsonDataPack("noise", "nest")
    for rate in rates_at(t_ns):
        noise.data.append({"rate": rate})
    return [noise]
