"""Settings of the REST server, read from the environment on top of the shared settings.

:func:`load_backend_config` is called when the server is built, never at import time; the result
is passed explicitly to :func:`hbp_nrp_backend.app.create_app`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hbp_nrp_backend.executors import EXECUTORS
from hbp_nrp_backend.executors.ray_settings import RaySettings, load_ray_settings
from hbp_nrp_backend.sandbox import SandboxConfig, load_sandbox_config
from hbp_nrp_commons.settings import (
    SERVICE_USER,
    Settings,
    SettingsError,
    env_float,
    env_int,
    env_path,
    load_settings,
)

AUTH_MODES = ("storage", "none")


@dataclass(frozen=True)
class BackendConfig:
    """Everything the REST server needs: the shared :class:`Settings` plus backend-only values.

    Attributes:
        settings: the shared settings (data root, broker, storage URL and timeout, listen address).
        auth: ``storage`` (verify bearer tokens with the storage server) or ``none``.
        max_simulations: concurrently active simulations (``NRP_MAX_SIMULATIONS``).
        max_lifetime: wall-clock limit of a simulation in seconds (``NRP_SIMULATION_MAX_LIFETIME``).
        stop_grace: SIGTERM-to-SIGKILL delay in seconds (``NRP_STOP_GRACE``).
        rest_threads: WSGI threads, at least ``max_simulations + 4`` (``NRP_REST_THREADS``).
        state_dir: folder of the SQLite registry (``NRP_BACKEND_STATE_DIR``).
        admin_users: user ids that see every simulation (``NRP_ADMIN_USERS``, plus the storage
            server's service user ``nrp-service``, which polls ``GET /simulation`` for its registry).
        completed_idle_stop: seconds after which a ``completed`` simulation is stopped.
        log_spool_dir: failed log uploads wait here for a retry (``NRP_LOG_SPOOL_DIR``, default
            ``state_dir/spool``: a REST server with its own state folder has its own spool).
        simulation_dir_link: symlink to the newest simulation folder (``NRP_SIMULATION_DIR``).
        auth_cache_ttl: seconds a verified token (or a granted view) stays cached.
        spool_retry_interval: seconds between retries of spooled log uploads.
        verbose: DEBUG logging; the simserver is then started with ``--verbose``.
        simserver_module: the module each simulation runs as ``python -m`` (``NRP_SIMSERVER_MODULE``).
        sandbox: how Simulation Servers are confined and limited (``NRP_SANDBOX``, ``NRP_SANDBOX_*``).
        mqtt_dynsec: create each simulation's MQTT client through mosquitto's dynamic security
            plugin (``NRP_MQTT_DYNSEC``; needs ``NRP_MQTT_SECRET``).
        log_max_mb: file content one log archive holds at most (``NRP_LOG_MAX_MB``; cut beyond).
        log_failed_keep: seconds logs storage refused for good are kept (``NRP_LOG_FAILED_KEEP``).
        max_body_kb: request body limit in KiB (``NRP_REST_MAX_BODY_KB``; 413 beyond, before the
            body is read or the token checked).
        executor: where Simulation Servers run: ``local`` child processes or ``ray`` actors on a Ray
            cluster (``NRP_EXECUTOR``).
        ray: the Ray executor's settings (``RAY_ADDRESS``, ``NRP_RAY_*``).
    """

    settings: Settings
    auth: str = "storage"
    max_simulations: int = 8
    max_lifetime: float = 86400.0
    stop_grace: float = 10.0
    rest_threads: int = 16
    state_dir: Path = field(default_factory=lambda: Path("backend"))
    admin_users: frozenset[str] = frozenset()
    completed_idle_stop: float = 600.0
    log_spool_dir: Path = field(default_factory=lambda: Path("backend/spool"))
    simulation_dir_link: Path = field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "nrp-simulation-dir"
    )
    auth_cache_ttl: float = 5.0
    spool_retry_interval: float = 30.0
    verbose: bool = False
    simserver_module: str = "hbp_nrp_simserver"
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    mqtt_dynsec: bool = False
    max_body_kb: int = 1024
    log_max_mb: int = 100
    log_failed_keep: float = 604800.0
    executor: str = "local"
    ray: RaySettings = field(default_factory=RaySettings)

    @property
    def log_max_bytes(self) -> int:
        return self.log_max_mb * 1024 * 1024

    @property
    def max_body_bytes(self) -> int:
        return self.max_body_kb * 1024

    @property
    def threads(self) -> int:
        """WSGI threads actually used: at least one per simulation plus 4 (a stop holds its thread)."""
        return max(self.rest_threads, self.max_simulations + 4)

    def with_overrides(self, **changes: Any) -> BackendConfig:
        """Return a copy with some fields replaced."""
        return replace(self, **changes)


def load_backend_config(
    env: Mapping[str, str] | None = None, settings: Settings | None = None
) -> BackendConfig:
    """Build the REST server configuration from environment variables.

    Args:
        env: the environment to read; ``os.environ`` when ``None``.
        settings: shared settings already loaded; read from ``env`` when ``None``.

    Raises:
        SettingsError: a variable has an unusable value; the message names it.
    """
    env = os.environ if env is None else env
    settings = load_settings(env) if settings is None else settings
    auth = env.get("NRP_AUTH", "").strip().lower() or "storage"
    if auth not in AUTH_MODES:
        raise SettingsError(f"NRP_AUTH must be one of {', '.join(AUTH_MODES)}, got {auth!r}")
    state_dir = env_path(env, "NRP_BACKEND_STATE_DIR", settings.backend_dir)
    admins = frozenset(name.strip() for name in env.get("NRP_ADMIN_USERS", "").split(",") if name.strip())
    # the storage server's registry polls GET /simulation as this user and must see every simulation
    admins |= {SERVICE_USER}
    executor = env.get("NRP_EXECUTOR", "").strip().lower() or "local"
    if executor not in EXECUTORS:
        raise SettingsError(f"NRP_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    sandbox = load_sandbox_config(env)
    return BackendConfig(
        settings=settings,
        auth=auth,
        max_simulations=env_int(env, "NRP_MAX_SIMULATIONS", 8, minimum=1),
        max_lifetime=env_float(env, "NRP_SIMULATION_MAX_LIFETIME", 86400.0, non_negative=True),
        stop_grace=env_float(env, "NRP_STOP_GRACE", 10.0, non_negative=True),
        rest_threads=env_int(env, "NRP_REST_THREADS", 16, minimum=1),
        state_dir=state_dir,
        admin_users=admins,
        completed_idle_stop=env_float(env, "NRP_COMPLETED_IDLE_STOP", 600.0, non_negative=True),
        log_spool_dir=env_path(env, "NRP_LOG_SPOOL_DIR", state_dir / "spool"),
        simulation_dir_link=env_path(
            env, "NRP_SIMULATION_DIR", Path(tempfile.gettempdir()) / "nrp-simulation-dir"
        ),
        auth_cache_ttl=env_float(env, "NRP_AUTH_CACHE_TTL", 5.0, non_negative=True),
        spool_retry_interval=env_float(env, "NRP_LOG_SPOOL_RETRY", 30.0, non_negative=True),
        simserver_module=env.get("NRP_SIMSERVER_MODULE", "").strip() or "hbp_nrp_simserver",
        sandbox=sandbox,
        mqtt_dynsec=_dynsec(env, settings),
        max_body_kb=env_int(env, "NRP_REST_MAX_BODY_KB", 1024, minimum=1),
        log_max_mb=env_int(env, "NRP_LOG_MAX_MB", 100, minimum=1),
        log_failed_keep=env_float(env, "NRP_LOG_FAILED_KEEP", 604800.0, non_negative=True),
        executor=executor,
        ray=load_ray_settings(env, sandbox.limits.memory_mb),
    )


def _dynsec(env: Mapping[str, str], settings: Settings) -> bool:
    raw = env.get("NRP_MQTT_DYNSEC", "").strip() or "0"
    if raw not in ("0", "1"):
        raise SettingsError(f"NRP_MQTT_DYNSEC must be 0 or 1, got {raw!r}")
    if raw == "1" and not settings.mqtt.secret:
        raise SettingsError("NRP_MQTT_DYNSEC=1 needs NRP_MQTT_SECRET (the passwords derive from it)")
    return raw == "1"
