"""OpenSim backend on the official ``opensim`` bindings (PyPI ``opensim``).

As in nrp-core, every muscle of the model is driven by a ``PrescribedController`` holding one constant
excitation per muscle; ``run_step(action, timestep_ns)`` sets those constants (``action``: one value
per muscle, in the model's muscle order, or ``{muscle name: value}``; an empty list sets all to 0,
None keeps them) and integrates to the engine's new time with an ``opensim.Manager``. After every
step the state is realized to the ``Dynamics`` stage (``EngineExtraConfigs["Realize state"] =
"Acceleration"`` realizes accelerations too); ``EngineExtraConfigs["Integrator accuracy"]`` sets the
manager's accuracy (default 5e-5).

Property types: ``Joint`` (names: the model's joints; values: a coordinate's value, by coordinate or
by single-coordinate joint name; all: ``{coordinate: value}``), ``Coordinate`` (the same by coordinate
names), ``Velocity`` (coordinate speeds), ``Force`` (a force's record values, e.g. a muscle's
tension, for forces that apply force), ``Muscle`` (activation) and ``Body`` (the body origin's
position in ground, metres).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import opensim as osim

from nrp_core.engines.py_sim.backend import SimulatorBackend, has_display

__all__ = ["OpensimBackend"]

logger = logging.getLogger(__name__)

DEFAULT_ACCURACY = 5e-5
_STAGES = ("Dynamics", "Acceleration")
_TYPES = ("Joint", "Coordinate", "Velocity", "Force", "Muscle", "Body")


def _quiet_opensim_log() -> None:
    # OpenSim prints "[info] Loaded model ..." for every model; warnings and errors still show.
    try:
        osim.Logger.setLevelString("warn")
    except Exception:  # older bindings without the Logger class
        pass


class OpensimBackend(SimulatorBackend):
    """An OpenSim model loaded from an ``.osim`` file, its muscles under excitation control."""

    simulator = "Opensim"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _quiet_opensim_log()
        path = self.resolved_world_file
        if not os.path.isfile(path):
            raise self.error(f"model file not found ({path})")
        self.accuracy = self._accuracy()
        stage = str(self.extra_configs.get("Realize state", "Dynamics"))
        if stage not in _STAGES:
            raise self.error(
                f"EngineExtraConfigs 'Realize state' is '{stage}'; expected one of {', '.join(_STAGES)}"
            )
        use_viewer = self.visualizer and has_display()
        if self.visualizer and not use_viewer:
            logger.warning(
                "%s: Visualizer requested but no display is available; running headless", self.engine_name
            )
        try:
            self.model, self.state = self._load(path, use_viewer)
        except Exception as exc:
            if not use_viewer:
                raise self.error(f"cannot load the model: {_osim_message(exc)}") from exc
            logger.warning(
                "%s: cannot open the OpenSim visualizer (%s); running headless", self.engine_name, exc
            )
            try:
                self.model, self.state = self._load(path, False)
            except Exception as exc2:
                raise self.error(f"cannot load the model: {_osim_message(exc2)}") from exc2
        self._realize: Callable[[Any], None] = (
            self.model.realizeAcceleration if stage == "Acceleration" else self.model.realizeDynamics
        )
        self.coordinates = self.model.getCoordinateSet()
        self.joints = self.model.getJointSet()
        self.forces = self.model.getForceSet()
        self.bodies = self.model.getBodySet()
        self.muscle_names = [muscle.getName() for muscle in self.model.getMuscles()]
        self._muscle_index = {name: index for index, name in enumerate(self.muscle_names)}
        self.reset()

    def _accuracy(self) -> float:
        value = self.extra_configs.get("Integrator accuracy", DEFAULT_ACCURACY)
        try:
            accuracy = float(value)
        except (TypeError, ValueError):
            accuracy = -1.0
        if not accuracy > 0:
            raise self.error(
                f"EngineExtraConfigs 'Integrator accuracy' must be a positive number, got {value!r}"
            )
        return accuracy

    def _load(self, path: str, use_viewer: bool) -> tuple[Any, Any]:
        model = osim.Model(path)
        model.initSystem()
        if use_viewer:
            model.setUseVisualizer(True)
        controller = osim.PrescribedController()
        controller.setName("nrp_excitations")
        muscles = model.getMuscles()
        for index in range(muscles.getSize()):
            controller.addActuator(muscles.get(index))
            controller.prescribeControlForActuator(muscles.get(index).getName(), osim.Constant(1.0))
        model.addController(controller)
        state = model.initSystem()
        # The Constant functions live in the controller the model now owns; keep them for run_step.
        owned = osim.PrescribedController.safeDownCast(model.getControllerSet().get("nrp_excitations"))
        functions = owned.get_ControlFunctions()
        self._excitations = [osim.Constant.safeDownCast(functions.get(i)) for i in range(functions.getSize())]
        return model, state

    # -- stepping -------------------------------------------------------------------------------------

    def _actuate(self, action: Any) -> None:
        if action is None:
            return
        values: list[float]
        if isinstance(action, dict):
            values = [float(function.getValue()) for function in self._excitations]
            for name, value in action.items():
                if name not in self._muscle_index:
                    raise self.error(f"unknown muscle '{name}' in the action ({self._muscles()})")
                values[self._muscle_index[name]] = float(value)
        else:
            values = [float(value) for value in action]
            if not values:
                values = [0.0] * len(self._excitations)
            elif len(values) != len(self._excitations):
                raise self.error(
                    f"the action has {len(values)} excitations, the model has {len(self._excitations)} "
                    f"muscles ({', '.join(self.muscle_names)})"
                )
        for function, value in zip(self._excitations, values, strict=True):
            function.setValue(value)

    def run_step(self, action: Any, timestep_ns: int) -> None:
        self._actuate(action)
        self._time_ns += int(timestep_ns)
        try:
            self.state = self.manager.integrate(self._time_ns / 1e9)
            self._realize(self.state)
        except Exception as exc:
            time_s = self._time_ns / 1e9
            raise self.error(f"integration to t = {time_s} s failed: {_osim_message(exc)}") from exc

    def reset(self) -> None:
        self.state = self.model.initializeState()
        self.state.setTime(0)
        self._time_ns = 0
        self.manager = osim.Manager(self.model)
        self.manager.setIntegratorAccuracy(self.accuracy)
        self.manager.initialize(self.state)
        self._realize(self.state)

    def shutdown(self) -> None:
        self.manager = None

    def get_sim_time(self) -> float:
        return float(self.state.getTime())

    # -- properties -----------------------------------------------------------------------------------

    def _muscles(self) -> str:
        return f"muscles: {', '.join(self.muscle_names)}"

    def _check_type(self, datapack_type: str) -> None:
        if datapack_type not in _TYPES:
            raise self.error(f"unknown property type '{datapack_type}' (types: {', '.join(_TYPES)})")

    def get_model_properties(self, datapack_type: str) -> list[str]:
        self._check_type(datapack_type)
        if datapack_type == "Joint":
            return [self.joints.get(i).getName() for i in range(self.joints.getSize())]
        if datapack_type in ("Coordinate", "Velocity"):
            return [self.coordinates.get(i).getName() for i in range(self.coordinates.getSize())]
        if datapack_type == "Force":
            return [self.forces.get(i).getName() for i in range(self.forces.getSize())]
        if datapack_type == "Muscle":
            return list(self.muscle_names)
        return [self.bodies.get(i).getName() for i in range(self.bodies.getSize())]

    def _coordinate(self, name: str, datapack_type: str) -> Any:
        if self.coordinates.contains(name):
            return self.coordinates.get(name)
        if datapack_type == "Joint" and self.joints.contains(name):
            joint = self.joints.get(name)
            if joint.numCoordinates() == 1:
                return joint.get_coordinates(0)
            raise self.error(
                f"joint '{name}' has {joint.numCoordinates()} coordinates; name one of the coordinates "
                f"({', '.join(self.get_model_properties('Coordinate'))})"
            )
        raise self.error(
            f"unknown {datapack_type.lower()} '{name}' (coordinates: "
            f"{', '.join(self.get_model_properties('Coordinate'))})"
        )

    def get_model_property(self, datapack_name: str, datapack_type: str) -> Any:
        self._check_type(datapack_type)
        if datapack_type in ("Joint", "Coordinate"):
            return float(self._coordinate(datapack_name, datapack_type).getValue(self.state))
        if datapack_type == "Velocity":
            return float(self._coordinate(datapack_name, datapack_type).getSpeedValue(self.state))
        if datapack_type == "Muscle":
            if datapack_name not in self._muscle_index:
                raise self.error(f"unknown muscle '{datapack_name}' ({self._muscles()})")
            return float(self.model.getMuscles().get(datapack_name).getActivation(self.state))
        if datapack_type == "Force":
            if not self.forces.contains(datapack_name):
                raise self.error(
                    f"unknown force '{datapack_name}' "
                    f"(forces: {', '.join(self.get_model_properties('Force'))})"
                )
            force = self.forces.get(datapack_name)
            if not force.get_appliesForce():
                return []
            values = force.getRecordValues(self.state)
            return [float(values.get(i)) for i in range(values.size())]
        if not self.bodies.contains(datapack_name):
            raise self.error(
                f"unknown body '{datapack_name}' (bodies: {', '.join(self.get_model_properties('Body'))})"
            )
        position = self.bodies.get(datapack_name).getPositionInGround(self.state)
        return [float(position.get(i)) for i in range(3)]

    def get_model_all_properties(self, datapack_type: str) -> dict[str, Any]:
        """``{name: value}``; for ``Joint`` keyed by coordinate, as nrp-core does."""
        self._check_type(datapack_type)
        names = self.get_model_properties("Coordinate" if datapack_type == "Joint" else datapack_type)
        values = {name: self.get_model_property(name, datapack_type) for name in names}
        if datapack_type == "Force":
            return {name: value for name, value in values.items() if value != []}
        return values


def _osim_message(exc: BaseException) -> str:
    """OpenSim's exception text without the C++ signature prefix the SWIG bindings add."""
    text = str(exc)
    marker = "': "
    if text.startswith("std::exception in '") and marker in text:
        text = text.split(marker, 1)[1]
    return " ".join(text.split())
