"""PySim engine for the PyBullet racecar (racecar.urdf ships with pybullet_data).

Receives the wheel speed in the datapack ``control_cmd`` and publishes the chassis position in
``positions``.
"""
from nrp_core.engines.py_sim import PySimEngineScript

WHEELS = ["left_rear_wheel_joint", "right_rear_wheel_joint",
          "left_front_wheel_joint", "right_front_wheel_joint"]


class Script(PySimEngineScript):

    def initialize(self):
        print("Bullet engine is initializing. Registering datapacks...")
        self._registerDataPack("positions")
        self._setDataPack("positions", {"body": [0.0, 0.0, 0.0]})
        self._registerDataPack("control_cmd")

    def runLoop(self, timestep_ns):
        command = self._getDataPack("control_cmd") or {}
        speed = command.get("act_list", [0.0])[0]
        action = {"Joint": [{"index": wheel, "controlMode": "VELOCITY_CONTROL",
                             "force": 10, "targetVelocity": speed} for wheel in WHEELS]}
        self.sim_manager.run_step(action, timestep_ns)
        self._setDataPack("positions", {"body": self.sim_manager.get_model_property("chassis", "Link")[0]})

    def shutdown(self):
        self.sim_manager.shutdown()
        print("Bullet engine: simulation ended")
