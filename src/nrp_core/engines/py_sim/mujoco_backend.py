"""MuJoCo backend on the official ``mujoco`` bindings.

``run_step`` writes the action into ``data.ctrl`` and advances by whole model timesteps; property
types are MuJoCo element kinds (``body``, ``joint``, ``site``, ``geom``, ``actuator``, ``sensor``)
and return plain lists. The ``<kind>_<attribute>`` form (``site_xpos``, ``joint_qvel``,
``body_xquat`` ...) returns the raw numpy array, as nrp-core's MuJoCo examples expect
(``get_model_property(site, "site_xpos").tolist()``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import mujoco
import numpy as np

from nrp_core.engines.py_sim.backend import SimulatorBackend, has_display

__all__ = ["MujocoBackend"]

logger = logging.getLogger(__name__)

_KINDS = {
    "body": (mujoco.mjtObj.mjOBJ_BODY, "nbody", "xpos"),
    "joint": (mujoco.mjtObj.mjOBJ_JOINT, "njnt", "qpos"),
    "site": (mujoco.mjtObj.mjOBJ_SITE, "nsite", "xpos"),
    "geom": (mujoco.mjtObj.mjOBJ_GEOM, "ngeom", "xpos"),
    "actuator": (mujoco.mjtObj.mjOBJ_ACTUATOR, "nu", "ctrl"),
    "sensor": (mujoco.mjtObj.mjOBJ_SENSOR, "nsensor", "data"),
}


class MujocoBackend(SimulatorBackend):
    """A MuJoCo model loaded from an MJCF (or binary MJB) file."""

    simulator = "Mujoco"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        path = self.resolved_world_file
        if not os.path.isfile(path):
            raise self.error(f"model file not found ({path})")
        try:
            if path.endswith(".mjb"):
                self.model = mujoco.MjModel.from_binary_path(path)
            else:
                self.model = mujoco.MjModel.from_xml_path(path)
        except Exception as exc:  # mujoco raises ValueError with the XML error text
            raise self.error(f"cannot load the model: {exc}") from exc
        model_step = float(self.model.opt.timestep)
        ratio = self.time_step / model_step
        if ratio < 0.5 or abs(ratio - round(ratio)) > 1e-6 * max(1.0, ratio):
            raise self.error(
                f"EngineTimestep {self.time_step} s is not a whole multiple of the model timestep "
                f"{model_step} s"
            )
        self.data = mujoco.MjData(self.model)
        mujoco.mj_forward(self.model, self.data)
        self._viewer: Any = None
        if self.visualizer:
            self._open_viewer()

    def _open_viewer(self) -> None:
        if not has_display():
            logger.warning(
                "%s: Visualizer requested but no display is available; running headless", self.engine_name
            )
            return
        try:
            import mujoco.viewer

            self._viewer = mujoco.viewer.launch_passive(self.model, self.data)
        except Exception as exc:  # a viewer is a convenience, never a reason to fail
            logger.warning("%s: cannot open the MuJoCo viewer: %s", self.engine_name, exc)

    def run_step(self, action: Any, timestep_ns: int) -> None:
        if action is not None:
            try:
                self.data.ctrl[:] = action
            except (ValueError, TypeError) as exc:
                raise self.error(
                    f"action {action!r} does not fit the {self.model.nu} actuator controls: {exc}"
                ) from exc
        substeps = round(timestep_ns * 1e-9 / self.model.opt.timestep)
        if substeps > 0:
            mujoco.mj_step(self.model, self.data, nstep=substeps)
            # mj_step computes positions and sensors before integrating: bring them up to date.
            mujoco.mj_forward(self.model, self.data)
        if self._viewer is not None:
            self._viewer.sync()

    def reset(self) -> None:
        mujoco.mj_resetData(self.model, self.data)
        mujoco.mj_forward(self.model, self.data)

    def shutdown(self) -> None:
        if self._viewer is not None:
            try:
                self._viewer.close()
            finally:
                self._viewer = None

    def _kind(self, datapack_type: str) -> tuple[Any, str, str, str | None]:
        """``(object type, count attribute, default attribute, explicit attribute or None)``."""
        kind, _, attribute = datapack_type.partition("_")
        kind = kind.lower()
        if kind not in _KINDS:
            raise self.error(
                f"unknown property type '{datapack_type}' (use one of {', '.join(_KINDS)}, "
                "optionally with _<attribute>, e.g. site_xpos)"
            )
        obj, count, default = _KINDS[kind]
        return obj, count, default, attribute or None

    def get_model_properties(self, datapack_type: str) -> list[str]:
        obj, count, _, _ = self._kind(datapack_type)
        names = []
        for index in range(getattr(self.model, count)):
            names.append(mujoco.mj_id2name(self.model, obj, index) or f"{datapack_type}{index}")
        return names

    def get_model_property(self, datapack_name: str, datapack_type: str) -> Any:
        _, _, default, attribute = self._kind(datapack_type)
        kind = datapack_type.partition("_")[0].lower()
        accessor = getattr(self.data, kind)
        try:
            element = accessor(datapack_name)
        except KeyError as exc:
            raise self.error(f"no {kind} named '{datapack_name}' in the model") from exc
        if attribute is not None:
            try:
                return np.array(getattr(element, attribute))
            except AttributeError as exc:
                raise self.error(f"a {kind} has no attribute '{attribute}'") from exc
        value = getattr(element, default)
        if kind == "joint":
            return {"qpos": value.tolist(), "qvel": element.qvel.tolist()}
        return np.asarray(value).tolist()

    def get_sim_time(self) -> float:
        return float(self.data.time)

    def __repr__(self) -> str:
        return f"MujocoBackend({self.world_file!r}, dt={self.model.opt.timestep})"
