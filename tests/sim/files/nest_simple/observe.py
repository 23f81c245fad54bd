# ruff: noqa: F403, F405 - nrp-core function files use star imports
from nrp_core import *
from nrp_core.data.nrp_json import *


@EngineDataPack(keyword="voltage", id=DataPackIdentifier("voltage", "nest"))
@EngineDataPack(keyword="noise", id=DataPackIdentifier("noise", "nest"))
@EngineDataPack(keyword="kernel", id=DataPackIdentifier("kernel", "nest"))
@SimulationTime(keyword="t_ns")
@StatusFunction()
def observe(voltage, noise, kernel, t_ns):
    observation = JsonRawData()
    observation.data["t_ns"] = t_ns
    observation.data["voltage_events"] = voltage.data[0]["n_events"]
    events = voltage.data[0]["events"]
    observation.data["last_v_m"] = events["V_m"][-1] if voltage.data[0]["n_events"] else None
    observation.data["rates"] = [node["rate"] for node in noise.data]
    observation.data["biological_time"] = kernel.data["biological_time"]
    observation.data["rng_seed"] = kernel.data["rng_seed"]
    return False, [observation]
