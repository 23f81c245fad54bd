"""PySim engines (``py_sim``): Python engine scripts driving MuJoCo, PyBullet or Gymnasium.

A user file defines ``class Script(PySimEngineScript)``; ``self.sim_manager`` is a
:class:`SimulatorManager` created on first access from the engine configuration. Simulator
packages are imported only when a manager for them is created.
"""

from nrp_core.engines.py_sim.engine_script import PySimEngineScript
from nrp_core.engines.py_sim.SimManager import SimulatorManager

__all__ = ["PySimEngineScript", "SimulatorManager"]
