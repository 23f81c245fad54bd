"""The log files of a running simulation, read from its directory (wherever that is).

Used by ``GET /simulation/<id>/logs`` through the executor: the local executor reads the folder
itself, a Ray node's actor reads its own and sends the result back.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any


class NoSuchLog(LookupError):
    """The simulation has no log file of the asked name."""


def read_log(path: Path, tail: int, offset: int = 0) -> dict[str, Any]:
    """``{"name", "size", "offset", "truncated", "content"}`` of one log file.

    ``content`` is the file from byte ``offset`` on, but at most its last ``tail`` bytes
    (``truncated`` then); ``offset`` in the answer is where ``content`` starts.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # never a link's target
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        size = handle.seek(0, 2)
        start = max(min(offset, size), size - tail)
        handle.seek(start)
        data = handle.read(size - start)
    return {
        "name": path.name,
        "size": size,
        "offset": start,
        "truncated": start > offset,
        "content": data.decode("utf-8", errors="replace"),
    }


def _is_regular(path: Path) -> bool:
    """A regular file, not a symlink: a ``*.log`` link is never followed."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def log_files(sim_dir: Path) -> list[Path]:
    """The top-level ``*.log`` files of a simulation directory: console log first, then by name."""
    found = sorted(p for p in sim_dir.iterdir() if p.name.endswith(".log") and _is_regular(p))
    return sorted(found, key=lambda p: not p.name.startswith("simulation_"))


def read_logs(sim_dir: Path, name: str | None, tail: int, offset: int) -> list[dict[str, Any]] | None:
    """The ``*.log`` files of ``sim_dir`` (only ``name`` when given) as :func:`read_log` reads them.

    Returns:
        ``None`` when the folder is gone (the simulation ended).

    Raises:
        NoSuchLog: there is no log file ``name``.
    """
    if not sim_dir.is_dir():
        return None
    paths = log_files(sim_dir)
    if name is not None:
        paths = [path for path in paths if path.name == name]
        if not paths:
            raise NoSuchLog(name)
    files = []
    for path in paths:
        try:
            files.append(read_log(path, tail, offset))
        except OSError:
            continue  # removed by a stop in progress
    return files
