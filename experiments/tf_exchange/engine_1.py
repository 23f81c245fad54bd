"""Engine python_1: publishes its own clock in the datapack ``datapack1`` after every step.

It also accepts an ``actions`` datapack (set it from a client or a main script with
``set_json_datapack("actions", "python_1", {...})``) and reports it whenever it holds something.
"""

from nrp_core.engines.python_json import EngineScript


class Script(EngineScript):
    def initialize(self):
        print("Engine 1 is initializing. Registering datapack...")
        self._registerDataPack("datapack1")
        self._registerDataPack("actions")
        self._setDataPack("datapack1", {"time": self._time_ns, "timestep": 0})

    def runLoop(self, timestep_ns):
        # The clock has already been advanced: _time_ns is the end time of this step.
        self._setDataPack("datapack1", {"time": self._time_ns, "timestep": timestep_ns})
        print("DataPack 1 data is", self._getDataPack("datapack1"))
        actions = self._getDataPack("actions")
        if actions is not None:
            print("Engine 1 actions are", actions)

    def reset(self):
        print("Engine 1 is resetting")
        self._setDataPack("datapack1", {"time": 0, "timestep": 0})

    def shutdown(self):
        print("Engine 1 is shutting down")
