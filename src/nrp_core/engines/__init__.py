"""Engines driven by the runtime: ``python_json``, ``py_sim``, ``nest_json`` and the datatransfer stand-in."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["experiment_path"]


def experiment_path(config: Mapping[str, Any], name: str | Path) -> Path:
    """Resolve a file name from an engine configuration against the experiment directory.

    Args:
        config: the engine configuration; in-process engines get the experiment directory as
            ``ExperimentDirectory`` from their launcher.
        name: the file name; absolute names are returned unchanged.

    Returns:
        ``name`` joined to ``ExperimentDirectory`` when the configuration has one, else to the
        working directory (an engine process is started in the experiment directory).
    """
    path = Path(name)
    if path.is_absolute():
        return path
    directory = config.get("ExperimentDirectory")
    return (Path(directory) if directory else Path.cwd()) / path
