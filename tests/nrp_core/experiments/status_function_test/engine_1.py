# ruff: noqa
"""python_1 (0.01 s): copies the client's ``actions`` into ``datapack_engine1`` at every step."""

from nrp_core.engines.python_json import EngineScript


class Script(EngineScript):
    def initialize(self):
        self._registerDataPack("actions")
        self._registerDataPack("datapack_engine1")
        self._setDataPack("datapack_engine1", {"time": self._time_ns, "timestep": 0, "test_data": 0})

    def runLoop(self, timestep_ns):
        actions = self._getDataPack("actions") or {}
        current = self._getDataPack("datapack_engine1")
        self._setDataPack(
            "datapack_engine1",
            {
                "time": self._time_ns,
                "timestep": timestep_ns,
                "test_data": actions.get("test_data", current["test_data"]),
            },
        )

    def reset(self):
        # Called before the server zeroes the clock: "time" is the time reached before the reset.
        actions = self._getDataPack("actions") or {}
        self._setDataPack(
            "datapack_engine1",
            {"time": self._time_ns, "timestep": 0, "test_data": 0, "action": actions.get("test_reset", 0)},
        )
