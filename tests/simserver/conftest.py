"""Fixtures of the Simulation Server tests: a copy of the ``tf_exchange`` experiment and runners on it."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hbp_nrp_simserver.config import ExperimentConfig, load_experiment_config
from hbp_nrp_simserver.errors import ScriptError
from hbp_nrp_simserver.notifier import Notifier
from hbp_nrp_simserver.script_runner import NRPScriptRunner

from .helpers import IN_PROCESS, TF_EXCHANGE, make_client


class RecordingNotifier(Notifier):
    """A notifier that keeps what it would publish."""

    def __init__(self, sim_id: str = "0") -> None:
        super().__init__(sim_id)
        self.statuses: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.reports: list[ScriptError] = []

    def _send_status(self, payload: dict[str, Any]) -> None:
        self.statuses.append(payload)

    def _send_error(self, payload: dict[str, Any]) -> None:
        self.errors.append(payload)

    def publish_error(self, error: ScriptError) -> None:
        self.reports.append(error)
        super().publish_error(error)


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """A private copy of ``experiments/tf_exchange``."""
    dest = tmp_path / "tf_exchange"
    shutil.copytree(TF_EXCHANGE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.log"))
    return dest


RunnerFactory = Callable[..., tuple[NRPScriptRunner, RecordingNotifier]]


@pytest.fixture
def runner_factory(experiment: Path) -> Iterator[RunnerFactory]:
    """Build runners for a script text on the experiment copy; all are shut down at the end."""
    runners: list[NRPScriptRunner] = []

    def build(
        script: str,
        client_args: str = IN_PROCESS,
        config: ExperimentConfig | None = None,
        client_factory: Callable[[], Any] | None = None,
    ) -> tuple[NRPScriptRunner, RecordingNotifier]:
        (experiment / "main_script.py").write_text(textwrap.dedent(script).lstrip("\n"))
        notifier = RecordingNotifier()
        runner = NRPScriptRunner(
            experiment,
            "main_script.py",
            "0",
            config or load_experiment_config(experiment / "simulation_config.json"),
            notifier,
            client_factory=client_factory or (lambda: make_client(experiment, args=client_args)),
        )
        runners.append(runner)
        return runner, notifier

    yield build
    for runner in runners:
        runner.shutdown()
