"""Test engine: the hooks named in the engine config's "FailIn" list raise."""

from nrp_core.engines.python_json import EngineScript


class Script(EngineScript):
    def _maybe_fail(self, hook):
        if hook in self._config.get("FailIn", []):
            raise RuntimeError(f"{hook} exploded")  # FAIL-LINE

    def initialize(self):
        self.shutdown_calls = 0
        self._maybe_fail("initialize")

    def runLoop(self, timestep_ns):
        self._maybe_fail("runLoop")

    def reset(self):
        self._maybe_fail("reset")

    def shutdown(self):
        self.shutdown_calls += 1
        self._maybe_fail("shutdown")
