"""The protocol every PySim simulator backend implements, and the error they raise."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["SimulatorBackend", "SimulatorError", "has_display"]


class SimulatorError(RuntimeError):
    """A simulator could not be created or driven; the message names the engine and the file.

    The message says all there is to say, so engines report it without a traceback (``brief``).
    """

    brief = True


def has_display() -> bool:
    """True when a graphical display is available to open a viewer window."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class SimulatorBackend:
    """One simulator instance loaded from a world file.

    Args:
        world_file: the ``WorldFileName`` as written in the configuration (used in messages).
        resolved_world_file: the same, resolved against the experiment directory.
        visualizer: open a viewer; ignored with a warning when no display is available.
        time_step: ``EngineTimestep`` in seconds.
        extra_configs: ``EngineExtraConfigs``.
        engine_name: the engine's name (used in messages).
    """

    simulator = "?"

    def __init__(
        self,
        *,
        world_file: str,
        resolved_world_file: str,
        visualizer: bool,
        time_step: float,
        extra_configs: dict[str, Any],
        engine_name: str,
    ) -> None:
        self.world_file = world_file
        self.resolved_world_file = resolved_world_file
        self.visualizer = visualizer
        self.time_step = time_step
        self.extra_configs = extra_configs
        self.engine_name = engine_name

    def error(self, text: str) -> SimulatorError:
        """A :class:`SimulatorError` whose message names the engine, simulator and world file."""
        return SimulatorError(
            f"py_sim engine '{self.engine_name}' ({self.simulator}, world file '{self.world_file}'): {text}"
        )

    def run_step(self, action: Any, timestep_ns: int) -> Any:
        """Apply ``action`` and advance by ``timestep_ns``."""
        raise NotImplementedError

    def reset(self) -> None:
        """Restore the initial state; the simulation time restarts at 0."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Release the simulator; idempotent."""

    def get_model_properties(self, datapack_type: str) -> list[str]:
        """Names of the elements of a property type."""
        raise NotImplementedError

    def get_model_property(self, datapack_name: str, datapack_type: str) -> Any:
        """Value of one element of a property type."""
        raise NotImplementedError

    def get_model_all_properties(self, datapack_type: str) -> dict[str, Any]:
        """``{name: value}`` for every element of a property type."""
        return {
            name: self.get_model_property(name, datapack_type)
            for name in self.get_model_properties(datapack_type)
        }

    def get_sim_time(self) -> float:
        """Simulation time in seconds."""
        raise NotImplementedError
