"""PyBullet backend: DIRECT mode unless a visualizer is requested and a display exists.

The world is ``plane.urdf`` from ``pybullet_data`` plus the model in ``WorldFileName`` (URDF, SDF or
MJCF by extension). A relative world file is looked up in the experiment directory first, then in
``pybullet_data``, so ``racecar/racecar.urdf`` loads the car that ships with PyBullet.

Actions are dicts with optional lists ``Joint``, ``Force`` and ``Torque``::

    {"Joint": [{"index": 2, "controlMode": "VELOCITY_CONTROL", "targetVelocity": 5, "force": 10}],
     "Force": [{"link": "chassis", "force": [0, 0, 10], "position": [0, 0, 0], "frame": "WORLD_FRAME"}],
     "Torque": [{"link": -1, "torque": [0, 0, 1], "frame": "WORLD_FRAME"}]}

``index`` and ``link`` take an index or a name; ``body`` (name or id) selects another body than the
main model. Property types: ``Joint`` (position, velocity, reaction forces, applied torque), ``Link``
(world position, world orientation; ``[0]`` is the position) and ``Body`` (base position,
orientation).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pybullet
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

from nrp_core.engines.py_sim.backend import SimulatorBackend, has_display

__all__ = ["BulletBackend"]

logger = logging.getLogger(__name__)

_CONTROL_MODES = {
    "VELOCITY_CONTROL": pybullet.VELOCITY_CONTROL,
    "POSITION_CONTROL": pybullet.POSITION_CONTROL,
    "TORQUE_CONTROL": pybullet.TORQUE_CONTROL,
    "PD_CONTROL": pybullet.PD_CONTROL,
}
_FRAMES = {"WORLD_FRAME": pybullet.WORLD_FRAME, "LINK_FRAME": pybullet.LINK_FRAME}
# Keys of a Joint action and the setJointMotorControl2 argument each maps to.
_JOINT_ARGUMENTS = {
    "targetPosition": "targetPosition",
    "targetVelocity": "targetVelocity",
    "force": "force",
    "positionGain": "positionGain",
    "velocityGain": "velocityGain",
    "maxVelocity": "maxVelocity",
}


class BulletBackend(SimulatorBackend):
    """A PyBullet world in its own physics client."""

    simulator = "Bullet"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        mode = pybullet.DIRECT
        if self.visualizer:
            if has_display():
                mode = pybullet.GUI
            else:
                logger.warning(
                    "%s: Visualizer requested but no display is available; using DIRECT", self.engine_name
                )
        self.client: BulletClient | None = BulletClient(connection_mode=mode)
        self._time_step_s = self.time_step
        self._time = 0.0
        try:
            self._build_world()
        except Exception:
            self.shutdown()
            raise
        self._initial_state = self.client.saveState()

    def _build_world(self) -> None:
        client = self._client()
        client.setAdditionalSearchPath(pybullet_data.getDataPath())
        client.setGravity(0, 0, -9.8)
        client.setTimeStep(self._time_step_s)
        self.plane = client.loadURDF("plane.urdf")
        path = self.resolved_world_file
        if not os.path.isfile(path):
            bundled = os.path.join(pybullet_data.getDataPath(), self.world_file)
            if os.path.isabs(self.world_file) or not os.path.isfile(bundled):
                raise self.error(f"model file not found ({path}, nor in pybullet_data)")
            path = bundled
        extension = os.path.splitext(path)[1].lower()
        try:
            if extension == ".sdf":
                bodies = list(client.loadSDF(path))
            elif extension in (".xml", ".mjcf"):
                bodies = list(client.loadMJCF(path))
            else:
                bodies = [client.loadURDF(path)]
        except pybullet.error as exc:
            raise self.error(f"cannot load the model: {exc}") from exc
        if not bodies:
            raise self.error("the model file holds no body")
        self.robot = bodies[0]
        self.bodies: dict[str, int] = {}
        self.joints: dict[str, tuple[int, int]] = {}
        self.links: dict[str, tuple[int, int]] = {}
        for body in [self.plane, *bodies]:
            base_name, body_name = (n.decode() for n in client.getBodyInfo(body))
            self.bodies.setdefault(body_name, body)
            self.links.setdefault(base_name, (body, -1))
            for joint in range(client.getNumJoints(body)):
                info = client.getJointInfo(body, joint)
                self.joints.setdefault(info[1].decode(), (body, joint))
                self.links.setdefault(info[12].decode(), (body, joint))

    def _client(self) -> BulletClient:
        if self.client is None:
            raise self.error("the simulator was shut down")
        return self.client

    # ---------------------------------------------------------------------------------------------
    # stepping

    def run_step(self, action: Any, timestep_ns: int) -> None:
        client = self._client()
        step = timestep_ns * 1e-9
        if step <= 0:
            return
        if step != self._time_step_s:
            client.setTimeStep(step)
            self._time_step_s = step
        if action:
            if not isinstance(action, dict):
                raise self.error(f"a Bullet action is a dict of Joint/Force/Torque lists, not {action!r}")
            for command in action.get("Joint") or ():
                self._apply_joint(client, command)
            for command in action.get("Force") or ():
                self._apply_external(client, command, "force")
            for command in action.get("Torque") or ():
                self._apply_external(client, command, "torque")
        client.stepSimulation()
        self._time += step

    def _body(self, command: dict[str, Any]) -> int:
        body = command.get("body", self.robot)
        if isinstance(body, str):
            if body not in self.bodies:
                raise self.error(f"no body named '{body}'")
            return self.bodies[body]
        return int(body)

    def _apply_joint(self, client: BulletClient, command: dict[str, Any]) -> None:
        body = self._body(command)
        index = command.get("index", command.get("jointIndex"))
        if isinstance(index, str):
            if index not in self.joints:
                raise self.error(f"no joint named '{index}'")
            body, index = self.joints[index]
        if index is None:
            raise self.error(f"a Joint action needs an 'index': {command!r}")
        mode_name = command.get("controlMode", "VELOCITY_CONTROL")
        mode = _CONTROL_MODES.get(mode_name) if isinstance(mode_name, str) else int(mode_name)
        if mode is None:
            raise self.error(f"unknown controlMode '{mode_name}' (use one of {', '.join(_CONTROL_MODES)})")
        arguments = {target: command[key] for key, target in _JOINT_ARGUMENTS.items() if key in command}
        client.setJointMotorControl2(body, int(index), mode, **arguments)

    def _apply_external(self, client: BulletClient, command: dict[str, Any], kind: str) -> None:
        body = self._body(command)
        link = command.get("link", -1)
        if isinstance(link, str):
            if link not in self.links:
                raise self.error(f"no link named '{link}'")
            body, link = self.links[link]
        frame = _FRAMES.get(command.get("frame", "WORLD_FRAME"), pybullet.WORLD_FRAME)
        if kind == "force":
            client.applyExternalForce(
                body, int(link), command["force"], command.get("position", [0, 0, 0]), frame
            )
        else:
            client.applyExternalTorque(body, int(link), command["torque"], frame)

    def reset(self) -> None:
        client = self._client()
        client.restoreState(self._initial_state)
        self._time = 0.0

    def shutdown(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.disconnect()
            except pybullet.error:
                pass

    # ---------------------------------------------------------------------------------------------
    # properties

    def _table(self, datapack_type: str) -> dict[str, Any]:
        kind = datapack_type.lower()
        if kind == "joint":
            return self.joints
        if kind == "link":
            return self.links
        if kind == "body":
            return self.bodies
        raise self.error(f"unknown property type '{datapack_type}' (use Joint, Link or Body)")

    def get_model_properties(self, datapack_type: str) -> list[str]:
        return list(self._table(datapack_type))

    def get_model_property(self, datapack_name: str, datapack_type: str) -> Any:
        client = self._client()
        table = self._table(datapack_type)
        if datapack_name not in table:
            raise self.error(f"no {datapack_type} named '{datapack_name}'")
        kind = datapack_type.lower()
        if kind == "joint":
            body, joint = table[datapack_name]
            position, velocity, forces, torque = client.getJointState(body, joint)
            return [position, velocity, list(forces), torque]
        if kind == "link":
            body, link = table[datapack_name]
            if link == -1:
                position, orientation = client.getBasePositionAndOrientation(body)
            else:
                state = client.getLinkState(body, link, computeForwardKinematics=True)
                position, orientation = state[0], state[1]
            return [list(position), list(orientation)]
        position, orientation = client.getBasePositionAndOrientation(table[datapack_name])
        return [list(position), list(orientation)]

    def get_sim_time(self) -> float:
        return self._time
