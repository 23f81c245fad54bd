"""``GET /simulation/<id>/logs``: a running simulation's log files, with the usual access checks."""

from __future__ import annotations

from tests.backend.conftest import BackendFactory, Storage


def test_logs_of_a_running_simulation(start_backend: BackendFactory, storage: Storage) -> None:
    backend = start_backend()
    rest = backend.rest
    sim_id = rest.launch()["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"])

    answer = rest.get(f"/simulation/{sim_id}/logs")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["simulationID"] == sim_id and body["state"] == "paused"
    names = [f["name"] for f in body["files"]]
    assert names == [f"simulation_{sim_id}.log", f"main_script_{sim_id}.log"]  # console log first
    console = body["files"][0]
    assert "ENVIRONMENT " in console["content"] and console["truncated"] is False
    assert console["size"] == len(console["content"].encode())
    assert body["files"][1]["content"] == f"Writing logs to 'main_script_{sim_id}.log'\n"

    tail = rest.get(f"/simulation/{sim_id}/logs", params={"tail": 5}).json()["files"]
    assert [f["content"] for f in tail][1] == "log'\n"
    assert all(f["truncated"] for f in tail)
    assert tail[1]["offset"] == tail[1]["size"] - 5
    for bad in ("abc", "0", "-3"):
        refused = rest.get(f"/simulation/{sim_id}/logs", params={"tail": bad})
        assert refused.status_code == 400 and "tail" in refused.json()["message"]
    refused = rest.get(f"/simulation/{sim_id}/logs", params={"offset": "-1"})
    assert refused.status_code == 400 and "offset" in refused.json()["message"]

    # following one file: from an offset on, only the named file
    script_log = f"main_script_{sim_id}.log"
    part = rest.get(f"/simulation/{sim_id}/logs", params={"name": script_log, "offset": 8}).json()["files"]
    assert [(f["name"], f["offset"], f["truncated"]) for f in part] == [(script_log, 8, False)]
    assert part[0]["content"] == f"Writing logs to '{script_log}'\n"[8:]
    beyond = rest.get(f"/simulation/{sim_id}/logs", params={"name": script_log, "offset": 10**6}).json()
    assert beyond["files"][0]["content"] == "" and beyond["files"][0]["offset"] == part[0]["size"]
    assert rest.get(f"/simulation/{sim_id}/logs", params={"name": "../x.log"}).status_code == 404

    assert rest.as_user(storage.bob).get(f"/simulation/{sim_id}/logs").status_code == 403
    assert rest.as_user(None).get(f"/simulation/{sim_id}/logs").status_code == 401
    assert rest.get("/simulation/4242/logs").status_code == 404

    assert rest.set_state(sim_id, "stopped").status_code == 200
    ended = rest.get(f"/simulation/{sim_id}/logs")
    assert ended.status_code == 404
    assert f"_simulation_{sim_id}.log.zip" in ended.json()["message"]
    assert "my_cloned_experiment" in ended.json()["message"]


def test_logs_route_is_in_the_openapi_document(start_backend: BackendFactory) -> None:
    spec = start_backend().rest.get("/openapi.json").json()
    get = spec["paths"]["/simulation/{sim_id}/logs"]["get"]
    assert [p["name"] for p in get.get("parameters", []) if p["in"] == "query"] == ["tail", "name", "offset"]
    schema = get["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/SimulationLogs")
    assert {"404", "403", "401"} <= set(get["responses"])
