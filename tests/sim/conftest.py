"""Fixtures of the simulator tests (helpers in :mod:`tests.sim.helpers`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.sim.helpers import Run, copy_experiment


@pytest.fixture
def run_experiment(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    """``run_experiment(name, *overrides)`` -> a :class:`Run` on a fresh copy of the experiment."""
    runs: list[Run] = []

    def start(name: str, *overrides: str, copy_to: Path | None = None) -> Run:
        experiment = copy_experiment(name, copy_to or tmp_path / f"run{len(runs)}")
        run = Run(experiment, list(overrides))
        runs.append(run)
        return run

    yield start
    for run in runs:
        try:
            if run.client.current_state() != "Created":
                run.client.shutdown()
        except Exception:  # the test already failed or shut down; keep cleaning up the others
            pass
