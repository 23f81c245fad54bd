# ruff: noqa
"""Stand-in for the NEST engine of nrp-core's loop_sync test: ``kernel`` = biological time in ms."""

from nrp_core.engines.python_json import EngineScript


class Script(EngineScript):
    def initialize(self):
        self._registerDataPack("kernel")
        self._registerDataPack("input")
        self._setDataPack("kernel", {"biological_time": 0.0, "received": None})

    def runLoop(self, timestep_ns):
        received = self._getDataPack("input")
        self._setDataPack(
            "kernel",
            {"biological_time": self._time_ns / 1e6, "received": received["iteration"] if received else None},
        )
