# ruff: noqa
"""python_2 (0.02 s in most configs): publishes its clock in ``datapack_engine2``."""

from nrp_core.engines.python_json import EngineScript


class Script(EngineScript):
    def initialize(self):
        self._registerDataPack("datapack_engine2")
        self._setDataPack("datapack_engine2", {"time": self._time_ns, "timestep": 0})

    def runLoop(self, timestep_ns):
        self._setDataPack("datapack_engine2", {"time": self._time_ns, "timestep": timestep_ns})

    def reset(self):
        self._setDataPack("datapack_engine2", {"time": self._time_ns, "timestep": 0})
