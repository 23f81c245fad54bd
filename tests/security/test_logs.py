"""Logs are never lost and never endless: the launcher's own space when the experiment refuses
them, permanent refusals reported in ``error`` and kept (not retried), transient failures retried
with backoff, symlinks never followed, a size cap."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from hbp_nrp_backend.logs import LogUploader, build_log_zip, own_logs_experiment
from hbp_nrp_backend.storage_client import StorageUnavailable
from hbp_nrp_storage.users import UserStore
from tests.backend.conftest import BackendFactory, Rest, Storage, make_experiment

DEADLINE = 60.0


def public_experiment_of_bob(storage: Storage, tmp_path: Path, name: str) -> None:
    storage.client().upload_experiment(storage.bob, name, make_experiment(tmp_path / name, {}))
    UserStore(storage.root).add_experiment(name, "bob", "Public")


def run_and_stop(rest: Rest, experiment: str) -> dict[str, Any]:
    sim = rest.launch(experiment)
    rest.wait_for(sim["simulationID"], lambda s: s["ready"], timeout=DEADLINE)
    response = rest.set_state(sim["simulationID"], "stopped")
    assert response.status_code == 200, response.text
    return rest.get(f"/simulation/{sim['simulationID']}").json()


def test_logs_of_someone_elses_public_experiment_go_to_the_launchers_own_space(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path
) -> None:
    public_experiment_of_bob(storage, tmp_path, "bobs_public")
    backend = start_backend()
    sim = run_and_stop(backend.rest, "bobs_public")
    assert sim["state"] == "stopped" and sim["error"] is None
    own = own_logs_experiment("alice")
    assert any(name.endswith(f"_simulation_{sim['simulationID']}.log.zip") for name in storage.files(own))
    assert not any(name.endswith(".log.zip") for name in storage.files("bobs_public", storage.bob))
    assert not list(backend.spool.glob("*.zip"))  # nothing left to retry


def test_logs_refused_everywhere_are_reported_and_kept_not_retried(
    start_backend: BackendFactory, own_storage: Storage, tmp_path: Path
) -> None:
    public_experiment_of_bob(own_storage, tmp_path, "bobs_public")
    # bob squats alice's own log space: private, so alice cannot even see it
    own_storage.client().create_experiment(own_storage.bob, own_logs_experiment("alice"))
    backend = start_backend(storage_url=own_storage.url, NRP_LOG_FAILED_KEEP="3600")
    rest = Rest(backend.url, own_storage.alice)
    sim = run_and_stop(rest, "bobs_public")
    assert sim["state"] == "stopped"
    assert sim["error"] is not None and sim["error"]["error_type"] == "Logs", sim
    assert "could not be stored" in sim["error"]["msg"]
    kept = list((backend.spool / "failed").glob("*.zip"))
    assert len(kept) == 1 and kept[0].name in sim["error"]["msg"]
    assert not list(backend.spool.glob("*.zip"))  # not in the retry queue
    assert own_storage.files(own_logs_experiment("alice"), own_storage.bob) == []


def test_a_symlinked_log_is_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("another user's secret\n")
    sim_dir = tmp_path / "sim"
    (sim_dir / "data").mkdir(parents=True)
    (sim_dir / "real.log").write_text("mine\n")
    (sim_dir / "stolen.log").symlink_to(secret)
    (sim_dir / "data" / "stolen.csv").symlink_to(secret)
    (sim_dir / "data" / "linked").symlink_to(tmp_path, target_is_directory=True)
    (sim_dir / "simulation_config.json").write_text(
        json.dumps({"EngineConfigs": [{"EngineType": "datatransfer_grpc_engine", "dataDirectory": "data"}]})
    )
    (sim_dir / "data" / "ok.csv").write_text("1,2\n")
    zip_path = build_log_zip(sim_dir, 1, "simulation_config.json", tmp_path)
    assert zip_path is not None
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == ["data/ok.csv", "real.log"]
        assert all(b"secret" not in archive.read(name) for name in archive.namelist())


def test_logs_over_the_cap_are_truncated_with_a_note(tmp_path: Path) -> None:
    sim_dir = tmp_path / "sim"
    sim_dir.mkdir()
    (sim_dir / "a.log").write_bytes(b"a" * 3000)
    (sim_dir / "b.log").write_bytes(b"b" * 3000)
    zip_path = build_log_zip(sim_dir, 1, "simulation_config.json", tmp_path, max_bytes=4000)
    assert zip_path is not None
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.read("a.log") == b"a" * 3000
        cut = archive.read("b.log")
        assert cut.startswith(b"b" * 1000) and b"truncated" in cut and len(cut) < 1200
        assert "b.log: 1000 of 3000 bytes kept" in archive.read("TRUNCATED.txt").decode()


class DownStorage:
    """A storage that is always unreachable, counting the uploads tried."""

    def __init__(self) -> None:
        self.uploads = 0

    def upload_logs(self, token: str, experiment_id: str, zip_path: Path, simulation_id: int) -> str:
        self.uploads += 1
        raise StorageUnavailable("down")

    def list_experiments(self, *args: Any, **kwargs: Any) -> list[Any]:
        raise StorageUnavailable("down")

    def create_experiment(self, token: str, name: str) -> None:
        raise StorageUnavailable("down")


def test_transient_failures_are_retried_with_a_growing_backoff(tmp_path: Path) -> None:
    now = [1000.0]
    storage = DownStorage()
    uploader = LogUploader(storage, tmp_path / "spool", retry_interval=10, clock=lambda: now[0])
    sim_dir = tmp_path / "sim"
    sim_dir.mkdir()
    (sim_dir / "x.log").write_text("x\n")
    assert uploader.archive(sim_dir, 3, "c.json", "exp", "alice", "t") == "spooled"
    tries = []
    for _ in range(400):  # 400 s in 1 s steps
        now[0] += 1
        before = storage.uploads
        uploader.retry_spooled()
        if storage.uploads > before:
            tries.append(now[0])
    gaps = [later - earlier for earlier, later in zip(tries, tries[1:], strict=False)]
    assert gaps[:4] == [20, 40, 80, 160] and all(gap == 160 for gap in gaps[4:])
    assert len(uploader.spooled()) == 1 and os.stat(uploader.spooled()[0]).st_mode & 0o077 == 0


def test_the_logs_route_never_follows_a_symlinked_log(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("another user's secret\n")
    backend = start_backend()
    rest = backend.rest
    sim_id = rest.launch()["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"], timeout=DEADLINE)
    sim_dir = (backend.data_dir / "current-simulation").resolve()  # NRP_SIMULATION_DIR: the newest
    assert sim_dir.name.startswith(f"nrp.{sim_id}.")
    (sim_dir / "stolen.log").symlink_to(secret)
    listing = rest.get(f"/simulation/{sim_id}/logs").json()
    assert "stolen.log" not in [entry["name"] for entry in listing["files"]]
    assert "secret" not in json.dumps(listing)
    one = rest.get(f"/simulation/{sim_id}/logs", params={"name": "stolen.log"})
    assert one.status_code in (400, 404) and "secret" not in one.text
    assert rest.set_state(sim_id, "stopped").status_code == 200
