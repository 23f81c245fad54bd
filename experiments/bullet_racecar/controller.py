"""Transceiver function: drive forward, reverse whenever the car leaves the band |x| <= 0.5 m."""
from nrp_core import *
from nrp_core.data.nrp_json import *

BAND = 0.5
SPEED = 20.0
car_speed = SPEED


@EngineDataPack(keyword="positions", id=DataPackIdentifier("positions", "bullet_simulator"))
@SimulationTime(keyword="t_ns")
@TransceiverFunction("bullet_simulator")
def controller(positions, t_ns):
    global car_speed
    x = positions.data["body"][0]
    if x > BAND:
        car_speed = -SPEED
    elif x < -BAND:
        car_speed = SPEED
    command = JsonDataPack("control_cmd", "bullet_simulator")
    command.data["act_list"] = [car_speed]
    record = JsonDataPack("car_position", "datatransfer_engine")
    record.data["t"] = t_ns * 1e-9
    record.data["x"] = x
    record.data["speed"] = car_speed
    return [command, record]
