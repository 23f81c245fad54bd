"""Helpers for the simulator tests: copy a bundled experiment, run it through ``NrpCore``, read its data.

Every run happens in a copy of the experiment under ``tmp_path`` so the repository stays clean. The
experiments record what they do through the datatransfer engine (``data/<run>/<name>.data``, one JSON
object per line), which is what the tests assert on.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from nrp_experiments import bundled_experiments_dir


def require(*modules: str) -> None:
    """Skip the test when a simulator package is not installed at all.

    Like ``pytest.importorskip`` but without importing it into the test process (NEST and PyBullet
    load native libraries and print banners); a package that is installed but broken fails the test.
    """
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")


FILES = Path(__file__).resolve().parent / "files"


def copy_experiment(name: str, destination: Path) -> Path:
    """Copy experiment ``name`` (bundled, or a test model under ``files/``) to ``destination/name``."""
    target = destination / name
    source = FILES / name if (FILES / name).is_dir() else bundled_experiments_dir() / name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "data", "*.log"))
    return target


def read_records(experiment: Path, name: str) -> list[dict[str, Any]]:
    """The ``data`` of every line the datatransfer engine wrote for datapack ``name`` (one run)."""
    files = sorted(experiment.glob(f"data/*/{name}.data"))
    assert files, f"no recording of {name} under {experiment / 'data'}"
    with open(files[-1], encoding="utf-8") as stream:
        return [json.loads(line)["data"] for line in stream if line.strip()]


class Run:
    """One ``NrpCore`` client on an experiment copy; shut down by the fixture."""

    def __init__(self, experiment: Path, overrides: list[str]) -> None:
        from nrp_core import NrpCore

        self.experiment = experiment
        args = " ".join(f"-o {override}" for override in overrides)
        self.client = NrpCore("localhost:5345", experiment_folder=str(experiment), args=args)

    def until_timeout(self) -> tuple[bool, bool, list[Any]]:
        self.client.initialize()
        return self.client.run_until_timeout()

    def records(self, name: str) -> list[dict[str, Any]]:
        return read_records(self.experiment, name)
