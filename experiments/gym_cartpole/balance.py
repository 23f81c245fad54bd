"""Transceiver function: a linear state-feedback controller that keeps the pole up (push left or right)."""
from nrp_core import *
from nrp_core.data.nrp_json import *

# weights of cart position, cart velocity, pole angle and pole angular velocity
GAINS = (0.5, 1.0, 10.0, 2.0)


@EngineDataPack(keyword="observation", id=DataPackIdentifier("observation", "gym_simulator"))
@SimulationTime(keyword="t_ns")
@TransceiverFunction("gym_simulator")
def balance(observation, t_ns):
    state = observation.data["observation"]
    push = sum(gain * value for gain, value in zip(GAINS, state))
    action = JsonDataPack("action", "gym_simulator")
    action.data["action"] = 1 if push > 0 else 0
    record = JsonDataPack("cartpole", "datatransfer_engine")
    record.data["t"] = t_ns * 1e-9
    record.data["observation"] = state
    record.data["terminated"] = observation.data["terminated"]
    record.data["terminations"] = observation.data["terminations"]
    return [action, record]
