# ruff: noqa: F403, F405 - nrp-core function files use star imports
from nrp_core import *
from nrp_core.data.nrp_json import *


@EngineDataPack(keyword="positions", id=DataPackIdentifier("positions", "bullet_simulator"))
@StatusFunction()
def positions(positions):
    return False, [positions]
