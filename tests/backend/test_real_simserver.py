"""One run with the real Simulation Server on the bundled ``tf_exchange`` experiment."""

from __future__ import annotations

import io
import zipfile

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
