from nrp_core.engines.python_json import EngineScript


class Script(EngineScript):
    def initialize(self):
        self._registerDataPack("count")
        self._setDataPack("count", {"value": -1})
