"""Every REST route (simulations, state changes, files, version, health) against a real REST
server process."""

from __future__ import annotations

import datetime
import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.backend.conftest import SIMULATION_FIELDS, Backend, BackendFactory, Storage
from tests.helpers.waiting import wait_until

FIELDS = set(SIMULATION_FIELDS)


@pytest.fixture(scope="module")
def backend(broker, storage: Storage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    factory = BackendFactory(broker, storage.url, storage.alice, tmp_path_factory.mktemp("rest"))
    yield factory(NRP_MAX_SIMULATIONS="4")
    factory.stop_all()


def assert_error(response: requests.Response, status: int, message: str, kind: str = "Client error") -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"message", "type", "data"}
    assert body["message"] == message
    assert body["type"] == kind


def test_first_launch_gets_id_zero_and_defaults(backend: Backend, storage: Storage) -> None:
    response = backend.rest.post("/simulation", {"experimentID": "my_cloned_experiment"})
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == "/simulation/0"
    sim = response.json()
    assert set(sim) == FIELDS
    assert sim["simulationID"] == 0
    assert sim["state"] == "paused"
    assert sim["ready"] is False
    assert sim["experimentConfiguration"] == "simulation_config.json"
    assert sim["mainScript"] == "main_script.py"
    assert sim["ctxId"] is None
    assert sim["MQTTPrefix"] == ""
    assert sim["owner"] == "alice"
    assert sim["error"] is None
    assert sim["creationDate"].endswith("Z")  # ISO 8601, UTC
    created = datetime.datetime.fromisoformat(sim["creationDate"])
    assert created.utcoffset() == datetime.timedelta(0)
    ready = backend.rest.wait_for(0, lambda s: s["ready"])
    assert ready["state"] == "paused"
    # The clone left out old.log; the symlink points at the simulation folder.
    link = backend.data_dir / "current-simulation"
    assert link.is_symlink()
    assert (link / "sub" / "s.txt").read_text() == "nested\n"
    assert not (link / "old.log").exists()
    assert (link / "simulation_0.log").exists()


def test_open_routes(backend: Backend) -> None:
    anonymous = backend.rest.as_user(None)
    version = anonymous.get("/version")
    assert version.status_code == 200
    assert list(version.json()) == ["hbp_nrp_backend", "hbp_nrp_simserver"]
    assert all(value == value.strip() and value for value in version.json().values())
    assert anonymous.get("/health").json() == {"status": "ok"}
    openapi = anonymous.get("/openapi.json")
    assert openapi.status_code == 200
    assert "/simulation/{sim_id}/state" in openapi.json()["paths"]
    assert anonymous.get("/docs").status_code == 200
    assert_error(anonymous.get("/simulation"), 401, "Authentication required")
    head = anonymous.request("HEAD", "/version")
    assert head.status_code == 200 and head.content == b""


def test_unknown_paths_and_methods(backend: Backend) -> None:
    rest = backend.rest
    for path in ("/nope", "/simulation/-1", "/simulation/abc", "/simulation/0/nope", "/../setup.py"):
        assert_error(rest.get(path), 404, "The command you requested was not found on this server")
    response = rest.put("/simulation", {})
    assert_error(response, 405, "Method not allowed")
    assert "POST" in response.headers["Allow"]
    assert_error(rest.request("DELETE", "/simulation/0"), 405, "Method not allowed")
    options = rest.request("OPTIONS", "/simulation")
    assert options.status_code == 204
    assert options.headers["Access-Control-Allow-Origin"] == "*"
    assert options.headers["Access-Control-Allow-Methods"] == "GET, POST, PUT, OPTIONS"
    assert "Authorization" in options.headers["Access-Control-Allow-Headers"]


def test_post_validation(backend: Backend) -> None:
    rest = backend.rest
    assert_error(rest.post("/simulation", {}), 400, "experimentID not given.")
    assert_error(rest.post("/simulation", {"experimentID": ""}), 400, "experimentID not given.")
    bad = rest.request("POST", "/simulation", data=b"{not json", headers={"Content-Type": "text/plain"})
    assert_error(bad, 400, "Malformed JSON body")
    assert_error(rest.post("/simulation", [1]), 400, "Malformed JSON body")
    assert_error(
        rest.post("/simulation", {"experimentID": "x", "state": "started"}),
        400,
        "Invalid state requested: (started)",
    )
    for name in ("/etc/passwd", "../x.py", "a/../../b.json"):
        assert_error(
            rest.post("/simulation", {"experimentID": "x", "mainScript": name}),
            400,
            f"Invalid file name: {name}",
        )
    response = rest.post("/simulation", {"experimentID": 5})
    assert response.status_code == 400 and response.json()["type"] == "Client error"
    # Validation comes before authentication; then 401 without or with a bad token.
    anonymous = rest.as_user(None)
    assert_error(anonymous.post("/simulation", {"experimentID": "x"}), 401, "Authentication required")
    assert_error(
        rest.as_user("not-a-token").post("/simulation", {"experimentID": "x"}), 401, "Authentication required"
    )
    scheme_only = anonymous.post("/simulation", {"experimentID": "x"}, headers={"Authorization": "aaa"})
    assert_error(scheme_only, 401, "Authentication required")
    assert_error(
        rest.post("/simulation", {"experimentID": "missing"}), 404, "Experiment missing not found in storage"
    )
    ids = [sim["simulationID"] for sim in rest.get("/simulation").json()]
    assert ids == sorted(set(ids))


def test_views_and_permissions(backend: Backend, storage: Storage) -> None:
    rest = backend.rest
    sim = rest.launch(ctxId="ctx-1")
    sim_id = sim["simulationID"]
    assert sim["ctxId"] == "ctx-1"
    listing = rest.get("/simulation").json()
    assert [item["simulationID"] for item in listing] == sorted(item["simulationID"] for item in listing)
    assert all(set(item) == FIELDS for item in listing)
    assert rest.get(f"/simulation/{sim_id}").json()["simulationID"] == sim_id
    state = rest.get(f"/simulation/{sim_id}/state").json()
    assert set(state) == {"state", "ready", "error"} and state["state"] == "paused"
    assert_error(rest.get("/simulation/9999"), 404, "The simulation with the given ID was not found")
    assert_error(rest.get("/simulation/9999/state"), 404, "The simulation with the given ID was not found")
    assert_error(
        rest.put("/simulation/9999/state", {"state": "started"}),
        404,
        "The simulation with the given ID was not found",
    )
    bob = rest.as_user(storage.bob)
    assert bob.get("/simulation").json() == []
    view = "Insufficient permissions to see the simulation changes"
    assert bob.get(f"/simulation/{sim_id}").status_code == 403
    assert bob.get(f"/simulation/{sim_id}").json()["message"].startswith(view)
    assert bob.get(f"/simulation/{sim_id}/state").status_code == 403
    assert_error(
        bob.put(f"/simulation/{sim_id}/state", {"state": "stopped"}),
        403,
        "Insufficient permissions to apply changes. Operation only allowed by simulation owner",
    )
    assert_error(rest.as_user(None).get(f"/simulation/{sim_id}"), 401, "Authentication required")
    # X-User-Name is never trusted.
    spoof = bob.get(f"/simulation/{sim_id}", headers={"X-User-Name": "alice"})
    assert spoof.status_code == 403
    assert rest.set_state(sim_id, "stopped").json()["state"] == "stopped"


def test_put_matrix_and_stop_uploads_logs(backend: Backend, storage: Storage) -> None:
    rest = backend.rest
    sim_id = rest.launch()["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"])
    path = f"/simulation/{sim_id}/state"
    transition = "State Transition error"
    assert_error(rest.put(path, {}), 400, "state not given.")
    assert_error(rest.request("PUT", path, data=b"{oops"), 400, "Malformed JSON body")
    for bad in ("created", "completed", "failed", "initialized", "bogus"):
        assert_error(
            rest.put(path, {"state": bad}),
            400,
            f"Invalid state requested: ({bad}). Current state: 'paused'; allowed: started, paused, stopped",
            transition,
        )
    assert rest.put(path, {"state": "paused"}).json()["state"] == "paused"
    started = rest.put(path, {"state": "started"})
    assert started.status_code == 200 and started.json()["state"] == "started"
    assert rest.put(path, {"state": "started"}).json()["state"] == "started"
    assert_error(
        rest.put(path, {"state": "created"}),
        400,
        "Invalid state requested: (created). Current state: 'started'; allowed: paused, started, stopped",
        transition,
    )
    assert rest.put(path, {"state": "paused"}).json()["state"] == "paused"
    assert rest.put(path, {"state": "started"}).json()["state"] == "started"
    # Rejected commands did not fail the simulation.
    assert rest.get(path).json()["state"] == "started"
    # The start travels over MQTT: let the stand-in log it before the stop ends it.
    sim_log = Path(os.readlink(backend.data_dir / "current-simulation")) / f"simulation_{sim_id}.log"
    wait_until(lambda: "STATE started" in sim_log.read_text(), message="the stand-in to log its start")
    zips_before = set(storage.files("my_cloned_experiment"))  # other tests' servers reuse ids
    stopped = rest.put(path, {"state": "stopped"})
    assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
    assert_error(
        rest.put(path, {"state": "started"}),
        400,
        "The state transition is invalid (The simulation requested is finalized)",
        transition,
    )
    assert_error(
        rest.put(path, {"state": "bogus"}),
        400,
        "The state transition is invalid (The simulation requested is finalized)",
        transition,
    )
    # The synchronous stop uploaded the logs: the zip is at the experiment root.
    names = [n for n in set(storage.files("my_cloned_experiment")) - zips_before]
    assert len(names) == 1
    assert names[0].endswith(f"_simulation_{sim_id}.log.zip")
    content = storage.client().get_file(storage.alice, "my_cloned_experiment", names[0], by_name=True)
    archive = zipfile.ZipFile(io.BytesIO(content))
    assert set(archive.namelist()) == {f"simulation_{sim_id}.log", f"main_script_{sim_id}.log"}
    log = archive.read(f"simulation_{sim_id}.log").decode()
    assert f"'--id', '{sim_id}'" in log and "STATE started" in log
    environment = next(line for line in log.splitlines() if line.startswith("ENVIRONMENT "))
    names_in_env = environment.split()[1:]
    assert "NRP_MQTT_BROKER_ADDRESS" in names_in_env
    assert not [n for n in names_in_env if n.endswith(("TOKEN", "PASSWORD", "SECRET", "KEY"))]


def test_script_error_is_visible_and_completion_followed(backend: Backend) -> None:
    rest = backend.rest
    sim_id = rest.launch("script_error")["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"])
    assert rest.set_state(sim_id, "started").status_code == 200
    sim = rest.wait_for(sim_id, lambda s: s["error"] is not None)
    assert sim["error"]["error_type"] == "Runtime"
    assert sim["error"]["line_number"] == 3
    assert sim["error"]["traceback"] == ""
    assert sim["state"] == "started"
    assert rest.set_state(sim_id, "stopped").json()["state"] == "stopped"

    sim_id = rest.launch("completes")["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"])
    rest.set_state(sim_id, "started")
    rest.wait_for(sim_id, lambda s: s["state"] == "completed")
    for bad in ("paused", "started"):
        assert_error(
            rest.set_state(sim_id, bad),
            400,
            f"The state transition is invalid ('completed' -> '{bad}'). Allowed from 'completed': stopped",
            "State Transition error",
        )
    assert rest.set_state(sim_id, "stopped").json()["state"] == "stopped"
