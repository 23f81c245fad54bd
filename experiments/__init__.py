"""Example experiments bundled with the NRP backend.

The folder is shipped in the wheel as the package ``nrp_experiments`` (``src/nrp_experiments`` is a link
to it). Every sub-folder with a ``simulation_config.json`` is one experiment; ``nrp up`` imports them into
storage under their folder names.
"""

from __future__ import annotations

from pathlib import Path


def bundled_experiments_dir() -> Path:
    """The folder holding the bundled experiments."""
    return Path(__file__).resolve().parent


def bundled_experiments() -> list[Path]:
    """Every bundled experiment folder (those with a ``simulation_config.json``), sorted by name."""
    root = bundled_experiments_dir()
    return sorted(p for p in root.iterdir() if (p / "simulation_config.json").is_file())
