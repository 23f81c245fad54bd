"""Transceiver function: motor spikes of the last step become wheel speeds; counts are recorded.

Each spike recorder is emptied after it is read (``n_events`` = 0 is sent back with the wheel
command), so ``n_events`` is the number of spikes of the last step.
"""
from nrp_core import *
from nrp_core.data.nrp_json import *

RECORDED = 20            # recorded motor neurons per side (brain.py)
RAD_PER_SPIKE_HZ = 0.04   # wheel speed (rad/s) per Hz of mean motor firing rate
spikes_total = 0


@EngineDataPack(keyword="left_spikes", id=DataPackIdentifier("left_motor_spikes", "nest"))
@EngineDataPack(keyword="right_spikes", id=DataPackIdentifier("right_motor_spikes", "nest"))
@EngineDataPack(keyword="sensors", id=DataPackIdentifier("sensors", "vehicle"))
@SimulationTime(keyword="t_ns")
@TransceiverFunction("vehicle")
def motors(left_spikes, right_spikes, sensors, t_ns):
    global spikes_total
    left_count = left_spikes.data[0]["n_events"]
    right_count = right_spikes.data[0]["n_events"]
    spikes_total += left_count + right_count
    step_s = 0.02
    wheels = JsonDataPack("wheels", "vehicle")
    wheels.data["left"] = RAD_PER_SPIKE_HZ * left_count / (RECORDED * step_s)
    wheels.data["right"] = RAD_PER_SPIKE_HZ * right_count / (RECORDED * step_s)

    empty_left = JsonDataPack("left_motor_spikes", "nest")
    empty_left.data["n_events"] = 0
    empty_right = JsonDataPack("right_motor_spikes", "nest")
    empty_right.data["n_events"] = 0

    record = JsonDataPack("vehicle", "datatransfer_engine")
    record.data["t"] = t_ns * 1e-9
    record.data["x"] = sensors.data["x"]
    record.data["y"] = sensors.data["y"]
    record.data["distance"] = sensors.data["distance"]
    record.data["eyes"] = [sensors.data["left"], sensors.data["right"]]
    record.data["wheels"] = [wheels.data["left"], wheels.data["right"]]
    record.data["spikes"] = left_count + right_count
    record.data["spikes_total"] = spikes_total
    return [wheels, empty_left, empty_right, record]
