# ruff: noqa
"""One observation per batch, ``{"iteration": i}``; never done (the timeout ends the run)."""

from nrp_core import *
from nrp_core.data.nrp_json import JsonRawData


@SimulationIteration(keyword="iteration")
@StatusFunction()
def never_done(iteration):
    observation = JsonRawData()
    observation.data["iteration"] = iteration
    return False, [observation]
