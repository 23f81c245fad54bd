# ruff: noqa
"""A python_json engine publishing ``clock`` = its time, step count and the last input it received.

The transceiver function linked to the engine sends it ``input`` = ``{"iteration": i}``; the engine
copies that value into ``clock`` at its next step, which shows when TF outputs arrive.
"""

from nrp_core.engines.python_json import EngineScript


class Script(EngineScript):
    def initialize(self):
        self._registerDataPack("clock")
        self._registerDataPack("input")
        self._steps = 0
        self._publish(None)

    def _publish(self, received):
        self._setDataPack("clock", {"time": self._time_ns, "steps": self._steps, "received": received})

    def runLoop(self, timestep_ns):
        self._steps += 1
        received = self._getDataPack("input")
        self._publish(received["iteration"] if received else None)
