"""PySim engine of the Braitenberg vehicle (MuJoCo): light sensors in, wheel speeds out.

Each eye looks 60 degrees to its side of the heading and sees the light with the cardioid intensity
(1 + cos(angle between its axis and the light)) / 2, in [0, 1]: brightest straight along its axis,
dark only right behind it, so the vehicle finds the light again after driving past it. The datapack ``sensors`` carries both
intensities, the robot's pose and its distance to the light; ``wheels`` holds the commanded wheel
speeds in rad/s.
"""
import math

from nrp_core.engines.py_sim import PySimEngineScript

EYE_ANGLE = math.radians(60.0)


class Script(PySimEngineScript):

    def initialize(self):
        print("Vehicle engine is initializing. Registering datapacks...")
        self._registerDataPack("sensors")
        self._registerDataPack("wheels")
        self._setDataPack("wheels", {"left": 0.0, "right": 0.0})
        self._sense()

    def _sense(self):
        sim = self.sim_manager
        x, y, _ = sim.get_model_property("robot", "body")
        w, qx, qy, qz = sim.get_model_property("robot", "body_xquat")
        heading = math.atan2(2.0 * (w * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
        light_x, light_y, _ = sim.get_model_property("light", "site")
        bearing = math.atan2(light_y - y, light_x - x)

        def eye(offset):
            return 0.5 * (1.0 + math.cos(bearing - (heading + offset)))

        self._setDataPack("sensors", {
            "left": eye(EYE_ANGLE),
            "right": eye(-EYE_ANGLE),
            "x": x,
            "y": y,
            "heading": heading,
            "distance": math.hypot(light_x - x, light_y - y),
            "time": sim.get_sim_time(),
        })

    def runLoop(self, timestep_ns):
        wheels = self._getDataPack("wheels")
        self.sim_manager.run_step([wheels["left"], wheels["right"]], timestep_ns)
        self._sense()

    def reset(self):
        self.sim_manager.reset()
        self._setDataPack("wheels", {"left": 0.0, "right": 0.0})
        self._sense()

    def shutdown(self):
        self.sim_manager.shutdown()
        print("Vehicle engine: simulation ended")
