"""``PySimEngineScript``: an ``EngineScript`` with a lazily created simulator manager."""

from __future__ import annotations

from typing import Any

from nrp_core.engines.py_sim.SimManager import SimulatorError, SimulatorManager
from nrp_core.engines.python_json.engine_script import EngineScript

__all__ = ["PySimEngineScript"]


class PySimEngineScript(EngineScript):
    """Base class of PySim engine scripts.

    ``self.sim_manager`` is created on first access as ``SimulatorManager(self._config)``; the
    engine server also touches it right after ``initialize()`` so a bad world file fails
    initialization. The default ``reset()`` restores the simulator's initial state and the default
    ``shutdown()`` releases it; scripts that override them call ``self.sim_manager`` themselves, as
    nrp-core's examples do.

    When the simulator cannot be created, the error is raised once; afterwards ``sim_manager`` is a
    stand-in whose ``shutdown()`` does nothing (a script's ``shutdown`` after a failed initialize
    does not fail again) and whose other methods raise the same error.
    """

    _sim_manager: SimulatorManager | None = None
    _sim_failure: SimulatorError | None = None

    @property
    def sim_manager(self) -> SimulatorManager:
        """The simulator of this engine, created from the engine configuration on first access."""
        if self._sim_manager is None:
            if self._sim_failure is not None:
                return _FailedSimulator(self._sim_failure)  # type: ignore[return-value]
            try:
                self._sim_manager = SimulatorManager(self._config)
            except SimulatorError as exc:
                self._sim_failure = exc
                raise
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


class _FailedSimulator:
    """What ``sim_manager`` is after the simulator failed to load: ``shutdown`` and ``reset`` do nothing."""

    def __init__(self, failure: SimulatorError) -> None:
        self._failure = failure

    def shutdown(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise SimulatorError(f"{self._failure} (the simulator was not created)")
