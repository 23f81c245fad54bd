"""PySim engine for Gymnasium's CartPole-v1: applies the action it receives, publishes the observation."""
from nrp_core.engines.py_sim import PySimEngineScript


class Script(PySimEngineScript):

    def initialize(self):
        print("Gym engine is initializing. Registering datapacks...")
        self._registerDataPack("observation")
        self._registerDataPack("action")
        self._publish()

    def _publish(self):
        values = self.sim_manager.get_model_all_properties("Property")
        self._setDataPack("observation", {
            "observation": values["observation"],
            "reward": values["reward"],
            "terminated": values["doneFlag"],
            "truncated": values["truncated"],
            "terminations": values["terminations"],
            "episode": values["episode"],
        })

    def runLoop(self, timestep_ns):
        command = self._getDataPack("action")
        action = command.get("action") if command else None
        self.sim_manager.run_step(action, timestep_ns)
        self._publish()

    def reset(self):
        self.sim_manager.reset()
        self._publish()

    def shutdown(self):
        self.sim_manager.shutdown()
        print("Gym engine: simulation ended")
