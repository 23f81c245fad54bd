"""``PySimEngineScript``: an ``EngineScript`` with a lazily created simulator manager."""

from __future__ import annotations

from nrp_core.engines.py_sim.SimManager import SimulatorManager
from nrp_core.engines.python_json.engine_script import EngineScript

__all__ = ["PySimEngineScript"]


class PySimEngineScript(EngineScript):
    """Base class of PySim engine scripts.

    ``self.sim_manager`` is created on first access as ``SimulatorManager(self._config)``; the
    engine server also touches it right after ``initialize()`` so a bad world file fails
    initialization. The default ``reset()`` restores the simulator's initial state and the default
    ``shutdown()`` releases it; scripts that override them call ``self.sim_manager`` themselves, as
    nrp-core's examples do.
    """

    _sim_manager: SimulatorManager | None = None

    @property
    def sim_manager(self) -> SimulatorManager:
        """The simulator of this engine, created from the engine configuration on first access."""
        if self._sim_manager is None:
            self._sim_manager = SimulatorManager(self._config)
        return self._sim_manager

    @sim_manager.setter
    def sim_manager(self, manager: SimulatorManager) -> None:
        self._sim_manager = manager

    def has_simulator(self) -> bool:
        """True once the simulator manager exists."""
        return self._sim_manager is not None

    def reset(self) -> None:
        if self._sim_manager is not None:
            self._sim_manager.reset()

    def shutdown(self) -> None:
        if self._sim_manager is not None:
            self._sim_manager.shutdown()
