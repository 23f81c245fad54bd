"""Settings of every NRP process, read from environment variables.

Settings are read only when a process or an app is built (:func:`load_settings`) and then
passed explicitly; no module reads the environment at import time. The README lists every
variable with its default.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_STORAGE_PORT = 9000
DEFAULT_BACKEND_PORT = 8090
DEFAULT_MQTT_PORT = 1883

#: The storage server's own user, sent when it polls the REST servers; they treat it as an admin.
SERVICE_USER = "nrp-service"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int | None = None) -> int:
    """Read the integer variable ``name`` from ``env``; ``default`` when unset or blank.

    Raises:
        SettingsError: the value is not an integer, or is below ``minimum``.
    """
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, non_negative: bool = False) -> float:
    """Read the number variable ``name`` from ``env``; ``default`` when unset or blank.

    Raises:
        SettingsError: the value is not a number, or is negative while ``non_negative``.
    """
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc
    if non_negative and value < 0:
        raise SettingsError(f"{name} must not be negative, got {raw!r}")
    return value


def env_path(env: Mapping[str, str], name: str, default: Path) -> Path:
    """Read the path variable ``name`` from ``env`` (``~`` expanded); ``default`` when unset."""
    raw = env.get(name, "").strip()
    return Path(raw).expanduser() if raw else default


@dataclass(frozen=True)
class StorageSettings:
    """Settings of the storage server (``nrp storage``)."""

    root: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_STORAGE_PORT
    templates: Path | None = None
    max_upload_mb: int = 2000
    zip_max_mb: int = 2000
    zip_max_files: int = 10000
    zip_max_ratio: int = 100
    #: NRP frontend build served at ``/`` (``NRP_FRONTEND_DIR``, ``--frontend``).
    frontend: Path | None = None
    #: lifetime of login tokens in seconds (``NRP_TOKEN_TTL``).
    token_ttl: float = 7 * 24 * 3600.0
    #: REST servers as ``[id=]url`` entries (``NRP_BACKENDS``).
    backends: str = ""
    #: servers files of the registry (``NRP_BACKENDS_FILE``, ``--backends-file``).
    backends_files: tuple[Path, ...] = ()
    #: seconds between polls of the REST servers (``NRP_BACKENDS_POLL_INTERVAL``).
    poll_interval: float = 3.0
    #: origins besides the login page's own that may receive a login token (``NRP_LOGIN_ORIGINS``).
    login_origins: tuple[str, ...] = ()

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


@dataclass(frozen=True)
class MqttSettings:
    """Where the MQTT broker is and which topic prefix to use."""

    host: str = "localhost"
    port: int = DEFAULT_MQTT_PORT
    prefix: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    """All settings of one NRP installation, rooted at ``data_dir``."""

    data_dir: Path
    storage: StorageSettings
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    storage_url: str = f"http://localhost:{DEFAULT_STORAGE_PORT}/storage"
    storage_timeout: float = 30.0
    backend_host: str = "127.0.0.1"
    backend_port: int = DEFAULT_BACKEND_PORT

    @property
    def backend_dir(self) -> Path:
        """The REST server's state: registry database, simulation folders, spooled logs."""
        return self.data_dir / "backend"

    def with_overrides(self, **changes: Any) -> Settings:
        """Return a copy with some fields replaced (command-line options win over the environment)."""
        return replace(self, **changes)


def parse_broker_address(value: str) -> tuple[str, int]:
    """Read ``NRP_MQTT_BROKER_ADDRESS``: ``host:port`` when valid, else ``localhost:1883`` with a warning.

    As in the original, an unusable value (empty, ``host:host:90``, ``host:host``) falls back to the
    default broker instead of stopping the process.
    """
    value = value.strip()
    default = ("localhost", DEFAULT_MQTT_PORT)
    if not value:
        return default
    parts = value.split(":")
    if len(parts) != 2 or not parts[0] or not parts[1].isdigit() or not 0 < int(parts[1]) < 65536:
        logger.warning("NRP_MQTT_BROKER_ADDRESS=%r is not host:port; using localhost:1883", value)
        return default
    return parts[0], int(parts[1])


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from environment variables.

    Args:
        env: the environment to read; ``os.environ`` when ``None``.

    Raises:
        SettingsError: a variable has an unusable value; the message names it.
    """
    env = os.environ if env is None else env
    data_dir = env_path(env, "NRP_DATA_DIR", Path("~/.local/share/nrp").expanduser())
    templates_raw = env.get("NRP_STORAGE_TEMPLATES", "").strip()
    storage = StorageSettings(
        root=env_path(env, "STORAGE_PATH", data_dir / "storage"),
        host=env.get("NRP_STORAGE_HOST", "").strip() or "127.0.0.1",
        port=env_int(env, "NRP_STORAGE_PORT", DEFAULT_STORAGE_PORT),
        templates=Path(templates_raw).expanduser() if templates_raw else None,
        max_upload_mb=env_int(env, "NRP_STORAGE_MAX_UPLOAD_MB", 2000),
        zip_max_mb=env_int(env, "NRP_STORAGE_ZIP_MAX_MB", 2000),
        zip_max_files=env_int(env, "NRP_STORAGE_ZIP_MAX_FILES", 10000),
        zip_max_ratio=env_int(env, "NRP_STORAGE_ZIP_MAX_RATIO", 100),
        frontend=env_path(env, "NRP_FRONTEND_DIR", Path())
        if env.get("NRP_FRONTEND_DIR", "").strip()
        else None,
        token_ttl=env_float(env, "NRP_TOKEN_TTL", 7 * 24 * 3600.0, non_negative=True),
        backends=env.get("NRP_BACKENDS", "").strip(),
        backends_files=tuple(
            Path(p).expanduser() for p in env.get("NRP_BACKENDS_FILE", "").split(os.pathsep) if p.strip()
        ),
        poll_interval=env_float(env, "NRP_BACKENDS_POLL_INTERVAL", 3.0, non_negative=True),
        login_origins=tuple(
            o.strip().rstrip("/") for o in env.get("NRP_LOGIN_ORIGINS", "").split(",") if o.strip()
        ),
    )
    mqtt_host, mqtt_port = parse_broker_address(env.get("NRP_MQTT_BROKER_ADDRESS", ""))
    mqtt = MqttSettings(host=mqtt_host, port=mqtt_port, prefix=env.get("NRP_MQTT_PREFIX", "").strip())
    storage_url = env.get("NRP_STORAGE_URL", "").strip()
    if not storage_url:
        address = env.get("STORAGE_ADDRESS", "").strip() or "localhost"
        port = env.get("STORAGE_PORT", "").strip() or str(DEFAULT_STORAGE_PORT)
        storage_url = f"http://{address}:{port}/storage"
    return Settings(
        data_dir=data_dir,
        storage=storage,
        mqtt=mqtt,
        storage_url=storage_url.rstrip("/"),
        storage_timeout=env_float(env, "NRP_STORAGE_TIMEOUT", 30.0),
        backend_host=env.get("NRP_BACKEND_HOST", "").strip() or "127.0.0.1",
        backend_port=env_int(env, "NRP_BACKEND_PORT", DEFAULT_BACKEND_PORT),
    )
