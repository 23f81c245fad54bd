"""The persistent registry (IDs never repeat) and the backend settings."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hbp_nrp_backend.config import load_backend_config
from hbp_nrp_backend.registry import Registry, SimulationRecord
from hbp_nrp_commons.settings import SettingsError
from tests.backend.conftest import SIMULATION_FIELDS


def test_ids_never_repeat_across_reopen(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert [registry.allocate_id() for _ in range(3)] == [0, 1, 2]
    registry.save(SimulationRecord(id=1, experiment_id="e", owner="alice", token="secret"))
    registry.close()
    reopened = Registry(tmp_path)
    assert reopened.allocate_id() == 3
    (record,) = reopened.load_all()
    assert record.experiment_id == "e" and record.token == "secret" and record.state == "created"
    assert stat.S_IMODE(reopened.path.stat().st_mode) == 0o600
    reopened.close()


def test_record_roundtrip_and_representation(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    record = SimulationRecord(id=7, experiment_id="e", ctx_id="c", state="failed", ready=True)
    record.error = {"msg": "x", "error_type": "Process", "exit_code": 1}
    registry.save(record)
    (loaded,) = registry.load_all()
    assert loaded == record
    assert list(loaded.representation("pfx")) == list(SIMULATION_FIELDS)
    assert loaded.representation("pfx")["MQTTPrefix"] == "pfx"


def test_config_defaults(tmp_path: Path) -> None:
    config = load_backend_config({"NRP_DATA_DIR": str(tmp_path)})
    assert config.auth == "storage"
    assert config.max_simulations == 8
    assert config.threads == 16
    assert config.stop_grace == 10.0
    assert config.max_lifetime == 86400.0
    assert config.completed_idle_stop == 600.0
    assert config.state_dir == tmp_path / "backend"
    assert config.log_spool_dir == tmp_path / "backend" / "spool"
    assert config.admin_users == frozenset({"nrp-service"})  # the storage registry's poller


def test_config_overrides(tmp_path: Path) -> None:
    config = load_backend_config(
        {
            "NRP_DATA_DIR": str(tmp_path),
            "NRP_AUTH": "none",
            "NRP_MAX_SIMULATIONS": "20",
            "NRP_REST_THREADS": "4",
            "NRP_ADMIN_USERS": "root, admin ,",
            "NRP_BACKEND_STATE_DIR": str(tmp_path / "state"),
            "NRP_LOG_SPOOL_DIR": str(tmp_path / "spool"),
        }
    )
    assert config.auth == "none"
    assert config.threads == 24  # never fewer than NRP_MAX_SIMULATIONS + 4
    assert config.admin_users == frozenset({"root", "admin", "nrp-service"})
    assert config.state_dir == tmp_path / "state"
    assert config.log_spool_dir == tmp_path / "spool"


def test_spool_follows_the_state_dir(tmp_path: Path) -> None:
    """Two REST servers with their own state folders never share (and race on) one spool."""
    config = load_backend_config(
        {"NRP_DATA_DIR": str(tmp_path), "NRP_BACKEND_STATE_DIR": str(tmp_path / "state")}
    )
    assert config.log_spool_dir == tmp_path / "state" / "spool"


@pytest.mark.parametrize(
    "name, value", [("NRP_AUTH", "ldap"), ("NRP_MAX_SIMULATIONS", "0"), ("NRP_STOP_GRACE", "soon")]
)
def test_config_errors_name_the_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_backend_config({"NRP_DATA_DIR": str(tmp_path), name: value})
