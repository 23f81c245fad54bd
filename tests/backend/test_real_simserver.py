"""One run with the real Simulation Server on the bundled ``tf_exchange`` experiment."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

from tests.backend.conftest import REPO, BackendFactory, Storage


def test_tf_exchange_runs_to_completion(start_backend: BackendFactory, storage: Storage) -> None:
    client = storage.client()
    if "tf_exchange" not in {e["name"] for e in client.list_experiments(storage.alice, None)}:
        client.upload_experiment(storage.alice, "tf_exchange", REPO / "experiments" / "tf_exchange")
    backend = start_backend(NRP_SIMSERVER_MODULE="hbp_nrp_simserver")
    rest = backend.rest
    sim_id = rest.launch("tf_exchange")["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"] or s["state"] == "failed", timeout=30)
    assert rest.set_state(sim_id, "started").json()["state"] == "started"
    sim = rest.wait_for(sim_id, lambda s: s["state"] in ("completed", "failed"), timeout=30)
    assert sim["state"] == "completed" and sim["error"] is None, sim
    before = set(storage.files("tf_exchange"))
    assert rest.set_state(sim_id, "stopped").json()["state"] == "stopped"
    (name,) = set(storage.files("tf_exchange")) - before
    archive = zipfile.ZipFile(io.BytesIO(client.get_file(storage.alice, "tf_exchange", name, by_name=True)))
    assert {f"simulation_{sim_id}.log", f"main_script_{sim_id}.log"} <= set(archive.namelist())


def test_errors_name_files_relative_to_the_experiment(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path
) -> None:
    """Neither the REST error nor the runtime_error shows the server's temporary simulation folder."""
    client = storage.client()
    broken = tmp_path / "tf_broken"
    shutil.copytree(
        REPO / "experiments" / "tf_exchange", broken, ignore=shutil.ignore_patterns("__pycache__")
    )
    (broken / "tf_1.py").write_text("import json\njson.loads('{')\n")  # fails while nrp-core loads it
    client.upload_experiment(storage.alice, "tf_broken", broken)
    if "tf_exchange" not in {e["name"] for e in client.list_experiments(storage.alice, None)}:
        client.upload_experiment(storage.alice, "tf_exchange", REPO / "experiments" / "tf_exchange")
    backend = start_backend(NRP_SIMSERVER_MODULE="hbp_nrp_simserver")
    rest = backend.rest

    missing = rest.launch("tf_exchange", mainScript="nope.py")["simulationID"]
    error = rest.wait_for(missing, lambda s: s["state"] == "failed" and s["error"], timeout=60)["error"]
    assert error["error_type"] == "Loading" and "'nope.py'" in error["msg"], error
    assert f"nrp.{missing}." not in json.dumps(error), error

    bad_tf = rest.launch("tf_broken")["simulationID"]
    error = rest.wait_for(bad_tf, lambda s: s["state"] == "failed" and s["error"], timeout=60)["error"]
    assert "tf_1.py" in error["msg"] and "JSONDecodeError" in error["msg"], error
    assert f"nrp.{bad_tf}." not in json.dumps(error), error
