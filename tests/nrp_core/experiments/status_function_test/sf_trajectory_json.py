# ruff: noqa
"""One observation per batch, ``{"iteration": i}``; done at iteration 3."""

from nrp_core import *
from nrp_core.data.nrp_json import JsonRawData


@SimulationIteration(keyword="iteration")
@StatusFunction()
def count_iterations(iteration):
    observation = JsonRawData()
    observation.data["iteration"] = iteration
    return iteration == 3, [observation]
