"""PySim engine for the MuJoCo pendulum: applies the commanded torque, publishes the joint state."""
from nrp_core.engines.py_sim import PySimEngineScript


class Script(PySimEngineScript):

    def initialize(self):
        print("MuJoCo engine is initializing. Registering datapacks...")
        self._registerDataPack("joint_state")
        self._registerDataPack("control_cmd")
        self._publish()

    def _publish(self):
        joint = self.sim_manager.get_model_property("hinge", "joint")
        self._setDataPack("joint_state", {
            "angle": joint["qpos"][0],
            "velocity": joint["qvel"][0],
            "tip": self.sim_manager.get_model_property("tip", "site"),
            "time": self.sim_manager.get_sim_time(),
        })

    def runLoop(self, timestep_ns):
        command = self._getDataPack("control_cmd")
        torque = command.get("torque") if command else None
        self.sim_manager.run_step(None if torque is None else [torque], timestep_ns)
        self._publish()

    def reset(self):
        self.sim_manager.reset()
        self._publish()

    def shutdown(self):
        self.sim_manager.shutdown()
        print("MuJoCo engine: simulation ended")
