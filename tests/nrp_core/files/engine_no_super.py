"""Test engine: __init__ does not call super().__init__(); imports a module from its own folder."""

from engine_helper import HELPER_VALUE

from nrp_core.engines.python_json import EngineScript


class Script(EngineScript):
    def __init__(self):
        self.helper_value = HELPER_VALUE

    def initialize(self):
        self._registerDataPack("value")
        self._setDataPack("value", self.helper_value)
