"""Exit codes chosen by the main flow for each way a server can end: 0 no error, 1 initialization
failed, 2 shutdown failed, 3 the simulation failed.

The process tests (test_server.py) cover 0 (SIGTERM), 1 (configuration, broker), 2 (usage) and
3 (syntax error) end to end; shutdown raising cannot be provoked from outside, so the main flow is
run here on a server whose shutdown behaves as each case requires.
"""

from __future__ import annotations

import signal

import pytest

from hbp_nrp_commons.settings import MqttSettings
from hbp_nrp_simserver.errors import ServerProcessExitCodes
from hbp_nrp_simserver.server import SimulationServer, run_server


class ScriptedServer(SimulationServer):
    """A server whose lifecycle already ended; ``shutdown`` raises or records a final state."""

    def __init__(self, final_state: str, shutdown_error: Exception | None = None) -> None:
        super().__init__(".", "0", "main_script.py", "simulation_config.json", MqttSettings())
        self.final_state = final_state
        self.shutdown_error = shutdown_error
        self.done_event.set()

    def shutdown(self) -> None:
        if self.shutdown_error is not None:
            raise self.shutdown_error
        self.exit_state = self.final_state


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize(
    ("final_state", "error", "code"),
    [
        ("stopped", None, ServerProcessExitCodes.NO_ERROR),
        ("failed", None, ServerProcessExitCodes.RUNNING_ERROR),
        ("stopped", RuntimeError("engine did not stop"), ServerProcessExitCodes.SHUTDOWN_ERROR),
    ],
)
def test_exit_code_of_the_main_flow(final_state, error, code):
    assert run_server(ScriptedServer(final_state, error)) == code


def test_exit_code_values():
    assert [int(c) for c in ServerProcessExitCodes] == [0, 1, 2, 3]
