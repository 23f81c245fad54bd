"""``nrp-up.env``: where ``nrp up`` leaves the URLs and token the other ``nrp`` commands use.

The file lives in the data root (``NRP_DATA_DIR``), holds ``KEY=VALUE`` lines and is written with
mode 0600 because it carries a token.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

UP_ENV_FILE = "nrp-up.env"
#: A saved token is reused only while it has at least this many seconds left (one day).
REUSE_MIN_REMAINING = 24 * 3600.0


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


def owner_token(
    storage_root: Path,
    data_dir: Path,
    user: str = "nrpuser",
    ttl: float | None = None,
    min_remaining: float = REUSE_MIN_REMAINING,
) -> str:
    """The token ``nrp up`` announces for ``user``: the one it saved last time while still good.

    Creates ``user`` on the first start. Later starts reuse the ``NRP_TOKEN`` of ``nrp-up.env``
    when storage knows it as ``user``'s and it expires in more than ``min_remaining`` seconds (or
    never); otherwise a new token is issued with lifetime ``ttl`` (``NRP_TOKEN_TTL`` when ``None``).
    So restarts no longer pile up tokens, and none of them lives forever.
    """
    from hbp_nrp_commons.settings import load_settings
    from hbp_nrp_storage.users import UserStore

    if ttl is None:
        ttl = load_settings().storage.token_ttl
    store = UserStore(storage_root)
    if not store.user_exists(user):
        return store.add_user(user, ttl)
    saved = read_up_env(data_dir).get("NRP_TOKEN", "")
    info = store.token_info(saved) if saved else None
    if info is not None and info.user == user:
        if info.expires is None or info.expires - time.time() > min_remaining:
            return saved
    return store.issue_token(user, ttl)
