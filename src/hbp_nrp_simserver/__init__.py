"""The NRP Simulation Server: one process per simulation, running the experiment's main script.

Run it with ``python -m hbp_nrp_simserver --dir D --id N --script S --config C`` (see
:mod:`hbp_nrp_simserver.server`). The pieces are usable on their own, as ``nrp run`` does: the
script runner needs neither a broker nor a lifecycle.
"""

from hbp_nrp_simserver.errors import ErrorType, ScriptError, ServerProcessExitCodes
from hbp_nrp_simserver.notifier import MQTTNotifier, Notifier
from hbp_nrp_simserver.script_runner import NRPScriptRunner
from hbp_nrp_simserver.wrapper import NrpCoreWrapper, NRPSimulationTimeout, NRPStopExecution

__all__ = [
    "ErrorType",
    "MQTTNotifier",
    "NRPScriptRunner",
    "NRPSimulationTimeout",
    "NRPStopExecution",
    "Notifier",
    "NrpCoreWrapper",
    "ScriptError",
    "ServerProcessExitCodes",
]
