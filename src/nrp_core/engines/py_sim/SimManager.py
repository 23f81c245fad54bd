"""``SimulatorManager``: one simulator behind the small API PySim engine scripts use.

The manager reads ``WorldFileName``, ``Visualizer``, ``Simulator``, ``EngineTimestep`` and
``EngineExtraConfigs`` from the engine configuration and imports the selected backend lazily, so an
experiment that uses MuJoCo never imports PyBullet and the other way round.

Relative world files are resolved against the experiment directory: the engine process runs there,
and in-process engines find it in the configuration (see :func:`nrp_core.engines.experiment_path`).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from nrp_core.engines import experiment_path
from nrp_core.engines.py_sim.backend import SimulatorBackend, SimulatorError

__all__ = ["SimulatorManager", "SimulatorError"]

logger = logging.getLogger(__name__)

SUPPORTED_SIMULATORS = ("Mujoco", "Bullet", "OpenAI", "Opensim")

# Simulator -> (backend module, backend class, the PyPI package it needs, its import name)
_BACKENDS = {
    "Mujoco": ("mujoco_backend", "MujocoBackend", "mujoco", "mujoco"),
    "Bullet": ("bullet_backend", "BulletBackend", "pybullet", "pybullet"),
    "OpenAI": ("gym_backend", "GymBackend", "gymnasium", "gymnasium"),
    "Opensim": ("opensim_backend", "OpensimBackend", "opensim", "opensim"),
}


class SimulatorManager:
    """Create and drive the simulator named in an engine configuration.

    Args:
        configuration: the engine configuration (``self._config`` of the engine script), with the
            keys ``Simulator``, ``WorldFileName``, ``Visualizer`` (default false), ``EngineTimestep``
            (seconds, default 0.01), ``EngineExtraConfigs`` (default ``{}``) and ``EngineName``.

    Raises:
        SimulatorError: unknown or unsupported simulator, simulator package missing, or a world file
            that cannot be loaded; the message names the engine, the simulator and the file.
    """

    def __init__(self, configuration: dict[str, Any]) -> None:
        self.configuration = configuration
        self.engine_name = str(configuration.get("EngineName", "py_sim"))
        self.simulator = str(configuration.get("Simulator", ""))
        self.world_file = str(configuration.get("WorldFileName", ""))
        self.visualizer = bool(configuration.get("Visualizer", False))
        self.time_step = float(configuration.get("EngineTimestep", 0.01))
        self.extra_configs = dict(configuration.get("EngineExtraConfigs") or {})
        self.sim_interface: SimulatorBackend = self._create_backend()

    def _create_backend(self) -> SimulatorBackend:
        where = f"py_sim engine '{self.engine_name}'"
        if self.extra_configs.get("framework") == "stable_baselines3":
            raise SimulatorError(
                f"{where}: vectorized stable_baselines3 environments are not supported yet "
                "(EngineExtraConfigs.framework)"
            )
        if self.simulator not in _BACKENDS:
            raise SimulatorError(
                f"{where}: Simulator {self.simulator} is not installed "
                f"(supported: {', '.join(SUPPORTED_SIMULATORS)})"
            )
        module_name, class_name, package, import_name = _BACKENDS[self.simulator]
        try:
            module = importlib.import_module(f"nrp_core.engines.py_sim.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != import_name and not (exc.name or "").startswith(f"{import_name}."):
                raise
            raise SimulatorError(
                f"{where}: Simulator {self.simulator} needs the Python package '{package}', which is not "
                f"installed (pip install {package}, or pip install nrp-backend[sim])"
            ) from exc
        backend_class: type[SimulatorBackend] = getattr(module, class_name)
        return backend_class(
            world_file=self.world_file,
            resolved_world_file=str(experiment_path(self.configuration, self.world_file)),
            visualizer=self.visualizer,
            time_step=self.time_step,
            extra_configs=self.extra_configs,
            engine_name=self.engine_name,
        )

    def run_step(self, action: Any, timestep_ns: int) -> Any:
        """Apply ``action`` and advance the simulator by ``timestep_ns`` nanoseconds.

        Returns:
            The backend's step result: the terminated flag for ``OpenAI``, else None.
        """
        return self.sim_interface.run_step(action, int(timestep_ns))

    def reset(self) -> None:
        """Restore the simulator's initial state and time."""
        self.sim_interface.reset()

    def shutdown(self) -> None:
        """Release the simulator; calling it again does nothing."""
        self.sim_interface.shutdown()

    def get_model_properties(self, datapack_type: str) -> list[str]:
        """The names of all elements of ``datapack_type`` (e.g. ``"Joint"``, ``"site"``)."""
        return self.sim_interface.get_model_properties(datapack_type)

    def get_model_property(self, datapack_name: str, datapack_type: str) -> Any:
        """The value of one named element of ``datapack_type``."""
        return self.sim_interface.get_model_property(datapack_name, datapack_type)

    def get_model_all_properties(self, datapack_type: str) -> dict[str, Any]:
        """``{name: value}`` for every element of ``datapack_type``."""
        return self.sim_interface.get_model_all_properties(datapack_type)

    def get_sim_time(self) -> float:
        """The simulator's time in seconds."""
        return self.sim_interface.get_sim_time()
