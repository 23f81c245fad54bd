"""The README's settings table against the code that reads the environment.

Every ``NRP_*`` / ``STORAGE_*`` variable (and Ray's ``RAY_ADDRESS``) named in ``src`` appears in
the table and every variable of the table is named in ``src``; the settings loaders read nothing the
table lacks; and each literal default of the table is what the loaders produce from an environment
without that variable.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from hbp_nrp_backend.config import BackendConfig, load_backend_config
from hbp_nrp_backend.simserver_process import SECRET_NAMES
from hbp_nrp_commons.settings import SERVICE_USER
from nrp_core.engines.channel import SpinPolicy

ROOT = Path(__file__).resolve().parents[1]
VARIABLE = re.compile(r"^(?:(?:NRP|STORAGE)_[A-Z0-9_]+|RAY_ADDRESS)$")
#: Names in the code that are no settings: secrets removed from a Simulation Server's environment.
NOT_SETTINGS = SECRET_NAMES


@dataclass(frozen=True)
class Row:
    """One variable of the README's settings table; ``default`` is ``None`` when not a literal."""

    name: str
    default: str | None


def readme_settings() -> list[Row]:
    """The variables of the ``## Settings`` table, with their backticked (literal) defaults."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) < 3:
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        literals = re.findall(r"`([^`]*)`", cells[1])
        if cells[1] == "empty":
            literals = [""] * len(names)
        elif not cells[1].startswith("`") or len(literals) != len(names):
            literals = [None] * len(names)  # prose ("from `nrp-up.env`"): not a literal default
        rows += [Row(name, default) for name, default in zip(names, literals, strict=True)]
    return rows


def code_variables() -> set[str]:
    """Every ``NRP_*`` / ``STORAGE_*`` string literal in the source, minus :data:`NOT_SETTINGS`."""
    found: set[str] = set()
    for path in (ROOT / "src").rglob("*.py"):
        for literal in re.findall(r"[\"']([A-Z][A-Z0-9_]+)[\"']", path.read_text()):
            if VARIABLE.match(literal):
                found.add(literal)
    return found - NOT_SETTINGS


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers every name read from it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self.values.get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return key in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


#: Where each variable's value ends up in the loaded configuration.
LOADED: dict[str, Callable[[BackendConfig], Any]] = {
    "NRP_DATA_DIR": lambda c: c.settings.data_dir,
    "STORAGE_PATH": lambda c: c.settings.storage.root,
    "NRP_STORAGE_HOST": lambda c: c.settings.storage.host,
    "NRP_STORAGE_PORT": lambda c: c.settings.storage.port,
    "NRP_STORAGE_TEMPLATES": lambda c: c.settings.storage.templates,
    "NRP_STORAGE_MAX_UPLOAD_MB": lambda c: c.settings.storage.max_upload_mb,
    "NRP_STORAGE_ZIP_MAX_MB": lambda c: c.settings.storage.zip_max_mb,
    "NRP_STORAGE_ZIP_MAX_FILES": lambda c: c.settings.storage.zip_max_files,
    "NRP_STORAGE_ZIP_MAX_RATIO": lambda c: c.settings.storage.zip_max_ratio,
    "NRP_FRONTEND_DIR": lambda c: c.settings.storage.frontend or "",
    "NRP_TOKEN_TTL": lambda c: c.settings.storage.token_ttl,
    "NRP_BACKENDS": lambda c: c.settings.storage.backends,
    "NRP_BACKENDS_FILE": lambda c: os.pathsep.join(map(str, c.settings.storage.backends_files)),
    "NRP_BACKENDS_POLL_INTERVAL": lambda c: c.settings.storage.poll_interval,
    "NRP_LOGIN_ORIGINS": lambda c: ",".join(c.settings.storage.login_origins),
    "NRP_BACKEND_HOST": lambda c: c.settings.backend_host,
    "NRP_BACKEND_PORT": lambda c: c.settings.backend_port,
    "NRP_STORAGE_URL": lambda c: c.settings.storage_url,
    "STORAGE_ADDRESS": lambda c: urlsplit(c.settings.storage_url).hostname,
    "STORAGE_PORT": lambda c: urlsplit(c.settings.storage_url).port,
    "NRP_STORAGE_TIMEOUT": lambda c: c.settings.storage_timeout,
    "NRP_AUTH": lambda c: c.auth,
    "NRP_AUTH_CACHE_TTL": lambda c: c.auth_cache_ttl,
    # the storage registry's poller is an admin whatever the variable says (the README says so)
    "NRP_ADMIN_USERS": lambda c: ",".join(sorted(c.admin_users - {SERVICE_USER})),
    "NRP_MAX_SIMULATIONS": lambda c: c.max_simulations,
    "NRP_REST_THREADS": lambda c: c.rest_threads,
    "NRP_REST_MAX_BODY_KB": lambda c: c.max_body_kb,
    "NRP_HTTP_MAX_CONNECTIONS": lambda c: c.settings.http.max_connections,
    "NRP_HTTP_IDLE_TIMEOUT": lambda c: c.settings.http.idle_timeout,
    "NRP_HTTP_HEADER_TIMEOUT": lambda c: c.settings.http.header_timeout,
    "NRP_STOP_GRACE": lambda c: c.stop_grace,
    "NRP_COMPLETED_IDLE_STOP": lambda c: c.completed_idle_stop,
    "NRP_SIMULATION_MAX_LIFETIME": lambda c: c.max_lifetime,
    "NRP_BACKEND_STATE_DIR": lambda c: c.state_dir,
    "NRP_LOG_SPOOL_DIR": lambda c: c.log_spool_dir,
    "NRP_LOG_SPOOL_RETRY": lambda c: c.spool_retry_interval,
    "NRP_LOG_MAX_MB": lambda c: c.log_max_mb,
    "NRP_LOG_FAILED_KEEP": lambda c: c.log_failed_keep,
    "NRP_SIMULATION_DIR": lambda c: c.simulation_dir_link,
    "NRP_SIMSERVER_MODULE": lambda c: c.simserver_module,
    # read by nrp_core's engine channels in each process, not by the REST server's configuration
    "NRP_ENGINE_SPIN_US": lambda c: round(SpinPolicy.shared().window * 1e6),
    "NRP_EXECUTOR": lambda c: c.executor,
    "RAY_ADDRESS": lambda c: c.ray.address,
    "NRP_RAY_NAMESPACE": lambda c: c.ray.namespace,
    "NRP_RAY_NUM_CPUS": lambda c: c.ray.defaults.num_cpus,
    "NRP_RAY_MEMORY_MB": lambda c: c.ray.defaults.memory_mb,
    "NRP_RAY_RESOURCES": lambda c: ",".join(f"{name}={amount:g}" for name, amount in c.ray.defaults.custom),
    "NRP_RAY_STORAGE_URL": lambda c: c.ray.storage_url or c.settings.storage_url,
    "NRP_RAY_MQTT_ADDRESS": lambda c: c.ray.mqtt_address or c.settings.mqtt.address,
    "NRP_RAY_PLACEMENT_TIMEOUT": lambda c: c.ray.placement_timeout,
    "NRP_RAY_LEASE": lambda c: c.ray.lease,
    "NRP_SANDBOX": lambda c: c.sandbox.requested,
    "NRP_SANDBOX_UID_BASE": lambda c: c.sandbox.uid_base,
    "NRP_SANDBOX_MEMORY_MB": lambda c: c.sandbox.limits.memory_mb,
    "NRP_SANDBOX_CPU_SECONDS": lambda c: c.sandbox.limits.cpu_seconds,
    "NRP_SANDBOX_FILE_MB": lambda c: c.sandbox.limits.file_mb,
    "NRP_SANDBOX_PROCESSES": lambda c: c.sandbox.limits.processes,
    "NRP_SANDBOX_LOG_MB": lambda c: c.sandbox.limits.log_mb,
    "NRP_SANDBOX_TMP_MB": lambda c: c.sandbox.limits.tmp_mb,
    "NRP_MQTT_BROKER_ADDRESS": lambda c: c.settings.mqtt.address,
    "NRP_MQTT_PREFIX": lambda c: c.settings.mqtt.prefix,
    "NRP_MQTT_SECRET": lambda c: c.settings.mqtt.secret,
    "NRP_MQTT_DYNSEC": lambda c: int(c.mqtt_dynsec),
}

ROWS = readme_settings()
LITERAL_ROWS = [row for row in ROWS if row.default is not None]


def test_the_table_names_every_variable_the_code_reads_and_no_other() -> None:
    table = {row.name for row in ROWS}
    assert len(table) == len(ROWS), "a variable appears twice in the table"
    code = code_variables()
    assert code - table == set(), "read by the code, missing from the README's settings table"
    assert table - code == set(), "in the README's settings table, read nowhere in the code"


def test_the_settings_loaders_read_only_variables_of_the_table(tmp_path: Path) -> None:
    env = RecordingEnv({"NRP_DATA_DIR": str(tmp_path)})
    load_backend_config(env)
    table = {row.name for row in ROWS}
    assert env.read - table == set()
    assert set(LOADED) <= table


@pytest.mark.parametrize("row", LITERAL_ROWS, ids=[row.name for row in LITERAL_ROWS])
def test_literal_defaults_match_the_code(row: Row, tmp_path: Path) -> None:
    assert row.default is not None
    assert row.name in LOADED, f"add {row.name} to LOADED: where its value ends up"
    expected: object = row.default
    env: dict[str, str] = {}
    reference = re.match(r"^\$([A-Z_]+)(/.*)?$", row.default)
    if reference:  # `$OTHER/sub`: relative to another variable, set here to a folder of its own
        env[reference.group(1)] = str(tmp_path / reference.group(1))
        expected = Path(env[reference.group(1)] + (reference.group(2) or ""))
    elif row.default.startswith(("~", "<tmp>")):
        expected = Path(row.default.replace("<tmp>", tempfile.gettempdir())).expanduser()
    elif "<" in row.default:  # `http://<STORAGE_ADDRESS>:...`: other variables' defaults filled in
        defaults = {other.name: other.default for other in ROWS}
        expected = re.sub(r"<([A-Z_]+)>", lambda m: str(defaults[m.group(1)]), row.default)
    value = LOADED[row.name](load_backend_config(env))
    if isinstance(expected, Path):
        assert Path(value) == expected
    elif re.fullmatch(r"[0-9]+(\.[0-9]+)?", row.default):
        assert float(value) == float(row.default)
    else:
        assert str(value) == expected
