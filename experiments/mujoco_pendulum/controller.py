"""Controller engine (python_json): PID with gravity compensation driving the pendulum to a target angle.

The target is the datapack ``target`` ({"angle": <rad>}); a client may change it at run time with
``set_json_datapack("target", "controller", {"angle": 0.5})``.
"""
import math

from nrp_core.engines.python_json import EngineScript

KP, KI, KD = 60.0, 30.0, 6.0
INTEGRATION_BAND = 0.1   # rad: integrate only near the target, so the swing-up does not wind up
GRAVITY_TORQUE = 9.81 * (1.0 * 0.5 + 0.2 * 0.25)   # m g l of bob and rod
MAX_TORQUE = 15.0


class Script(EngineScript):

    def initialize(self):
        print("Controller engine is initializing. Registering datapacks...")
        self._registerDataPack("joint_state")
        self._registerDataPack("target")
        self._setDataPack("target", {"angle": 1.0})
        self._registerDataPack("torque")
        self._setDataPack("torque", {"torque": 0.0})
        self._integral = 0.0

    def runLoop(self, timestep_ns):
        state = self._getDataPack("joint_state")
        if not state:
            return
        dt = timestep_ns * 1e-9
        target = self._getDataPack("target")["angle"]
        error = target - state["angle"]
        if abs(error) < INTEGRATION_BAND:
            self._integral = max(-0.5, min(0.5, self._integral + error * dt))
        torque = (KP * error + KI * self._integral - KD * state["velocity"]
                  + GRAVITY_TORQUE * math.sin(state["angle"]))
        torque = max(-MAX_TORQUE, min(MAX_TORQUE, torque))
        self._setDataPack("torque", {"torque": torque, "error": error})

    def reset(self):
        self._integral = 0.0
        self._setDataPack("torque", {"torque": 0.0})
