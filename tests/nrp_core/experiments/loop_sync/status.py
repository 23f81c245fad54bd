# ruff: noqa
"""Report, once per batch, the TF records of this batch (from the shared ``timeline``)."""

from nrp_core import *
from nrp_core.data.nrp_json import JsonRawData


@SimulationTime(keyword="time_ns")
@StatusFunction()
def report(time_ns):
    row = JsonRawData()
    row.data["time_ms"] = time_ns // 1000000
    row.data["records"] = list(timeline)
    timeline.clear()
    return False, [row]
