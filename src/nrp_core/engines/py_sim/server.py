"""The ``py_sim`` engine server: the ``python_json`` server plus an eager simulator check.

A PySim engine speaks the same protocol as a ``python_json`` engine. The only addition: right after
the script's ``initialize()`` the server touches ``script.sim_manager``, so a missing or broken world
file fails initialization (naming the engine and the file) instead of the first step.
"""

from __future__ import annotations

from typing import Any

from nrp_core.engines.py_sim.engine_script import PySimEngineScript
from nrp_core.engines.python_json.server_callbacks import EngineServer

__all__ = ["PySimEngineServer", "make_server"]


class PySimEngineServer(EngineServer):
    """:class:`EngineServer` for scripts deriving from :class:`PySimEngineScript`."""

    def initialize(self, request: dict[str, Any]) -> None:
        super().initialize(request)
        script = self.script
        if isinstance(script, PySimEngineScript) and not script.has_simulator():
            # A SimulatorError names engine, simulator, file and bad value: raised as is, no traceback.
            script.sim_manager  # noqa: B018 - creates the simulator


def make_server() -> PySimEngineServer:
    """A fresh :class:`PySimEngineServer` (the ``py_sim`` server factory, engine process or in-process)."""
    return PySimEngineServer()
