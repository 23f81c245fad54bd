"""``nrp-up.env``: where ``nrp up`` leaves the URLs and token the other ``nrp`` commands use.

The file lives in the data root (``NRP_DATA_DIR``), holds ``KEY=VALUE`` lines and is written with
mode 0600 because it carries a token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

UP_ENV_FILE = "nrp-up.env"


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of ``path``; blank lines and ``#`` comments skipped, a missing file is empty."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def read_up_env(data_dir: Path) -> dict[str, str]:
    """The values ``nrp up`` saved in ``data_dir`` (empty when it never ran there)."""
    return read_env_file(data_dir / UP_ENV_FILE)


def write_up_env(data_dir: Path, values: Mapping[str, str]) -> Path:
    """Replace ``data_dir/nrp-up.env`` atomically with ``values``, readable by the owner only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / UP_ENV_FILE
    temporary = path.with_name(f".{UP_ENV_FILE}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.writelines(f"{key}={value}\n" for key, value in values.items())
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return path
