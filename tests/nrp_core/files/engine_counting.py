"""Test engine: registers two datapacks and counts every hook call."""

from nrp_core.engines.python_json import EngineScript


class Script(EngineScript):
    def __init__(self):
        super().__init__()
        self.calls = {"initialize": 0, "runLoop": 0, "reset": 0, "shutdown": 0}
        self.timesteps = []

    def initialize(self):
        self.calls["initialize"] += 1
        self._registerDataPack("datapack1")
        self._registerDataPack("datapack2")
        self._setDataPack("datapack2", {"time": self._time_ns})

    def runLoop(self, timestep_ns):
        self.calls["runLoop"] += 1
        self.timesteps.append((timestep_ns, self._time_ns))

    def reset(self):
        self.calls["reset"] += 1

    def shutdown(self):
        self.calls["shutdown"] += 1
