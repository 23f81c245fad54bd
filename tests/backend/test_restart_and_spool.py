"""What a restarted REST server does with the simulations of its previous run, and how simulation
logs are spooled while the storage server is down, then uploaded."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import zipfile
from pathlib import Path

from hbp_nrp_commons import mqtt
from tests.backend.conftest import BackendFactory, Storage
from tests.backend.test_lifecycle_rest import simserver_pid
from tests.helpers.waiting import HANG, wait_until


def alive(pid: int) -> bool:
    stat_file = Path(f"/proc/{pid}/stat")
    try:
        return stat_file.read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def log_zips(storage: Storage, experiment: str, sim_id: int) -> list[str]:
    return [n for n in storage.files(experiment) if n.endswith(f"_simulation_{sim_id}.log.zip")]


def test_restart_fails_leftovers_kills_survivors_and_keeps_their_logs(
    start_backend: BackendFactory, storage: Storage, broker
) -> None:
    prefix = "restart"
    backend = start_backend(NRP_MQTT_PREFIX=prefix)
    rest = backend.rest
    first = rest.launch("completes")["simulationID"]
    rest.wait_for(first, lambda s: s["ready"])
    first_dir = Path(os.readlink(backend.data_dir / "current-simulation"))
    first_pid = simserver_pid(backend)
    second = rest.launch()["simulationID"]
    rest.wait_for(second, lambda s: s["ready"])
    assert rest.set_state(second, "started").status_code == 200
    second_pid = simserver_pid(backend)
    zips_before = set(storage.files("completes")) | set(storage.files("my_cloned_experiment"))
    backend.server.kill()  # SIGKILL: no shutdown logic runs

    # A stale retained lifecycle message, as a crashed run leaves them.
    stale_topic = mqtt.lifecycle_topic(prefix, 77)
    publisher = mqtt.MqttConnection(broker.settings(), mqtt.client_id("test"))
    publisher.connect(HANG)
    publisher.publish(
        stale_topic,
        {
            "source_node": "restart_nrp_backend",
            "source_state": "created",
            "event": "initialized",
            "target_state": "paused",
        },
        qos=1,
        retain=True,
        wait=True,
    )
    publisher.close()
    assert alive(first_pid) and alive(second_pid)  # the stand-in does not watch its parent

    restarted = start_backend.restart(backend)
    rest = restarted.rest
    for sim_id in (first, second):
        sim = rest.get(f"/simulation/{sim_id}").json()
        assert sim["state"] == "failed"
        assert sim["error"] == {"msg": "Backend restarted", "error_type": "Process"}
    assert not alive(first_pid) and not alive(second_pid)
    assert not first_dir.exists()
    for sim_id in (first, second):
        experiment = "completes" if sim_id == first else "my_cloned_experiment"
        (name,) = set(log_zips(storage, experiment, sim_id)) - zips_before
        content = storage.client().get_file(storage.alice, experiment, name, by_name=True)
        assert f"simulation_{sim_id}.log" in zipfile.ZipFile(io.BytesIO(content)).namelist()
    # IDs never repeat across restarts.
    assert rest.launch()["simulationID"] == second + 1
    # The stale retained message was cleared at start-up.
    seen: list[bytes] = []
    listener = mqtt.MqttConnection(broker.settings(), mqtt.client_id("test"))
    listener.connect(HANG)
    listener.subscribe(stale_topic, lambda t, p: seen.append(p), timeout=HANG)
    # a retained message reaches a new subscriber before one published after it subscribed
    listener.publish(stale_topic, {"marker": True}, qos=1, wait=True, timeout=HANG)
    wait_until(lambda: seen, message="the marker message")
    listener.close()
    assert [json.loads(p) for p in seen if p] == [{"marker": True}]


def test_sigterm_stops_every_simulation_and_exits_zero(
    start_backend: BackendFactory, storage: Storage
) -> None:
    backend = start_backend()
    rest = backend.rest
    sim_id = rest.launch()["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"])
    pid = simserver_pid(backend)
    zips_before = set(log_zips(storage, "my_cloned_experiment", sim_id))  # other tests use this id too
    assert backend.server.stop(timeout=HANG) == 0
    assert not alive(pid)
    assert len(set(log_zips(storage, "my_cloned_experiment", sim_id)) - zips_before) == 1
    restarted = start_backend.restart(backend)
    assert restarted.rest.get(f"/simulation/{sim_id}").json()["state"] == "stopped"
    assert "Backend restarted" not in json.dumps(restarted.rest.get("/simulation").json())


def test_logs_are_spooled_while_storage_is_down_then_uploaded(
    start_backend: BackendFactory, own_storage: Storage
) -> None:
    backend = start_backend(storage_url=own_storage.url)
    rest = backend.rest.as_user(own_storage.alice)
    sim_id = rest.launch()["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"])
    own_storage.server.stop()

    response = rest.set_state(sim_id, "stopped")  # answers without waiting for the storage
    assert response.status_code == 200 and response.json()["state"] == "stopped"
    spooled = sorted(backend.spool.iterdir())
    assert [p.name.rsplit("_simulation_", 1)[1] for p in spooled] == [
        f"{sim_id}.log.zip",
        f"{sim_id}.log.zip.json",
    ]
    for path in spooled:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sidecar = json.loads(next(p for p in spooled if p.suffix == ".json").read_text())
    assert sidecar["experimentID"] == "my_cloned_experiment" and sidecar["owner"] == "alice"
    # The token and the experiment check are cached, so the clone is what fails: 500, registered failed.
    failed = rest.post("/simulation", {"experimentID": "my_cloned_experiment"})
    assert failed.status_code == 500, failed.text
    body = failed.json()
    assert body["type"] == "Server Error"
    assert body["message"].startswith('Error starting the simulation. ("StorageUnavailable(')
    assert body["message"].endswith('") An exception has occurred')
    assert body["data"]
    failed_sim = rest.get(f"/simulation/{sim_id + 1}").json()
    assert failed_sim["state"] == "failed"
    # A loading error has the fields of every script or loading error in the REST representation.
    assert failed_sim["error"] == {
        "sim_id": str(sim_id + 1),
        "msg": body["message"],
        "error_type": "Loading",
        "fileName": "main_script.py",
        "line_number": -1,
        "offset": -1,
        "line_text": "",
        "traceback": "",
    }
    # A token not yet verified cannot be checked while storage is down: 503.
    unavailable = rest.as_user(own_storage.bob).get("/simulation")
    assert unavailable.status_code == 503
    assert unavailable.json() == {
        "message": "Storage server unavailable",
        "type": "Server Error",
        "data": None,
    }

    own_storage.restart()
    wait_until(lambda: not list(backend.spool.iterdir()), message="the spooled logs to be uploaded")
    assert len(log_zips(own_storage, "my_cloned_experiment", sim_id)) == 1


def test_unreachable_broker_is_503_and_nothing_is_registered(start_backend: BackendFactory) -> None:
    from tests.helpers.processes import free_port

    backend = start_backend(NRP_MQTT_BROKER_ADDRESS=f"127.0.0.1:{free_port()}")
    response = backend.rest.post("/simulation", {"experimentID": "my_cloned_experiment"})
    assert response.status_code == 503
    assert response.json() == {"message": "MQTT broker unreachable", "type": "Server Error", "data": None}
    assert backend.rest.get("/simulation").json() == []
    os.kill(backend.server.proc.pid, signal.SIGTERM)
    assert backend.server.proc.wait(HANG) == 0
