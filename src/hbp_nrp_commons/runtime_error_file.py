"""The private copy of a simulation's runtime error, with its traceback, in the simulation folder.

The Simulation Server publishes a ``runtime_error`` message without the traceback (the topic is
the original's, and a broker is shared); it also writes the whole report, traceback and exit code
included, to :data:`RUNTIME_ERROR_FILE` in the simulation folder, which only the REST server reads
(:func:`read_runtime_error`) to complete the simulation's REST ``error``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

RUNTIME_ERROR_FILE = ".nrp_runtime_error.json"
#: The file is read only up to this size (a script can write the folder; the REST server stays bounded).
MAX_REPORT_BYTES = 256 * 1024
#: The fields read back, with their types: nothing else of the file reaches the REST answer.
FIELDS: dict[str, type] = {
    "sim_id": str,
    "msg": str,
    "error_type": str,
    "fileName": str,
    "line_number": int,
    "offset": int,
    "line_text": str,
    "traceback": str,
    "exit_code": int,
}


def write_runtime_error(sim_dir: str | Path, report: dict[str, Any]) -> None:
    """Write ``report`` (JSON) to the simulation folder, replacing an earlier one atomically."""
    path = Path(sim_dir) / RUNTIME_ERROR_FILE
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(report, handle)
    os.replace(temporary, path)


def read_runtime_error(sim_dir: str | Path) -> dict[str, Any] | None:
    """The report of the simulation folder, its known fields only; ``None`` when absent or unusable.

    Never follows a symlink and reads a regular file only, at most :data:`MAX_REPORT_BYTES`.
    """
    try:
        fd = os.open(Path(sim_dir) / RUNTIME_ERROR_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            data = json.loads(handle.read(MAX_REPORT_BYTES + 1)[:MAX_REPORT_BYTES])
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    return {
        key: data[key]
        for key, kind in FIELDS.items()
        if isinstance(data.get(key), kind) and not isinstance(data.get(key), bool)
    }
