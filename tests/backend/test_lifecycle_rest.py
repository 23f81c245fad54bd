"""Supervision, capacity and concurrency seen through a real REST server (contract 2.11, 6.3)."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import zipfile
from pathlib import Path

import pytest

from hbp_nrp_commons import mqtt
from tests.backend.conftest import Backend, BackendFactory


def simserver_pid(backend: Backend) -> int:
    """The pid of the newest simulation's simserver (found by its ``--dir``)."""
    sim_dir = os.readlink(backend.data_dir / "current-simulation")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--dir" in args and sim_dir.encode() in args:
            return int(entry.name)
    raise AssertionError("no simserver found")


@pytest.mark.parametrize("experiment, code", [("exit_one", 1), ("exit_seven", 7)])
def test_exit_code_fails_the_simulation(
    start_backend: BackendFactory, broker, experiment: str, code: int
) -> None:
    backend = start_backend(NRP_MQTT_PREFIX=f"exit{code}")
    statuses: list[dict] = []
    listener = mqtt.MqttConnection(broker.settings(), mqtt.client_id("test"))
    listener.connect(5)
    listener.subscribe(mqtt.status_topic(f"exit{code}", 0), lambda t, p: statuses.append(json.loads(p)))
    try:
        rest = backend.rest
        created = rest.launch(experiment)
        assert created["MQTTPrefix"] == f"exit{code}"
        # The stand-in exits 0.8 s after its start; failed must follow within 2 s.
        sim = rest.wait_for(0, lambda s: s["state"] == "failed", timeout=6)
        assert sim["error"] == {
            "msg": f"Simulation Server exited with code {code}",
            "error_type": "Process",
            "exit_code": code,
        }
        deadline = time.monotonic() + 2
        while not any(s.get("state") == "failed" for s in statuses) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert statuses[-1]["state"] == "failed"  # the backend's fallback status
        assert all(
            isinstance(statuses[-1][k], float) for k in ("realTime", "simulationTime", "simulationTimeLeft")
        )
        assert not (backend.data_dir / "current-simulation").exists()  # the link went with the folder
    finally:
        listener.close()


def test_sigkill_from_outside_fails_within_two_seconds(start_backend: BackendFactory) -> None:
    backend = start_backend()
    rest = backend.rest
    rest.launch()
    rest.wait_for(0, lambda s: s["ready"])
    sim_dir = Path(os.readlink(backend.data_dir / "current-simulation"))
    os.kill(simserver_pid(backend), signal.SIGKILL)
    before = time.monotonic()
    sim = rest.wait_for(0, lambda s: s["state"] == "failed", timeout=2)
    assert time.monotonic() - before < 2
    assert sim["error"]["exit_code"] == -9 and sim["error"]["error_type"] == "Process"
    deadline = time.monotonic() + 3
    while sim_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sim_dir.exists()


def test_stubborn_simserver_is_killed_after_the_grace_period(start_backend: BackendFactory) -> None:
    backend = start_backend(NRP_STOP_GRACE="1")
    rest = backend.rest
    rest.launch("stubborn")
    rest.wait_for(0, lambda s: s["ready"])
    before = time.monotonic()
    response = rest.set_state(0, "stopped")
    elapsed = time.monotonic() - before
    assert response.json() == {"state": "stopped", "ready": True, "error": None}
    assert 1.0 <= elapsed < 5


def test_capacity_and_gets_during_a_slow_stop(start_backend: BackendFactory) -> None:
    backend = start_backend(NRP_MAX_SIMULATIONS="2")
    rest = backend.rest
    slow = rest.launch("slow_stop")["simulationID"]
    other = rest.launch()["simulationID"]
    rest.wait_for(slow, lambda s: s["ready"])
    full = rest.post("/simulation", {"experimentID": "my_cloned_experiment"})
    assert full.status_code == 409
    assert full.json() == {
        "message": "Maximum number of simulations reached on this server (2); stop one first",
        "type": "Client error",
        "data": None,
    }
    results: dict[str, object] = {}

    def stop() -> None:
        start = time.monotonic()
        results["response"] = rest.set_state(slow, "stopped")
        results["elapsed"] = time.monotonic() - start

    stopper = threading.Thread(target=stop)
    stopper.start()
    time.sleep(0.4)  # the stop is now waiting for the slow simserver
    for path in (f"/simulation/{other}", f"/simulation/{slow}/state", "/simulation", "/version"):
        before = time.monotonic()
        assert rest.get(path).status_code == 200
        assert time.monotonic() - before < 0.5, path
    # Still cleaning up: the slot is not free yet.
    assert rest.post("/simulation", {"experimentID": "my_cloned_experiment"}).status_code == 409
    stopper.join(15)
    assert results["response"].json()["state"] == "stopped"  # type: ignore[attr-defined]
    assert results["elapsed"] >= 1.5  # type: ignore[operator]
    third = rest.launch()
    assert third["simulationID"] == 2
    for sim_id in (other, 2):
        assert rest.set_state(sim_id, "stopped").status_code == 200


def test_completed_simulation_is_stopped_when_idle(start_backend: BackendFactory) -> None:
    backend = start_backend(NRP_COMPLETED_IDLE_STOP="1")
    rest = backend.rest
    rest.launch("completes")
    rest.wait_for(0, lambda s: s["ready"])
    rest.set_state(0, "started")
    rest.wait_for(0, lambda s: s["state"] == "completed", timeout=5)
    rest.wait_for(0, lambda s: s["state"] == "stopped", timeout=5)


def test_wall_clock_limit_stops_any_simulation(start_backend: BackendFactory) -> None:
    backend = start_backend(NRP_SIMULATION_MAX_LIFETIME="1.5")
    rest = backend.rest
    rest.launch()
    rest.wait_for(0, lambda s: s["state"] == "stopped", timeout=6)


def test_lost_start_is_republished(start_backend: BackendFactory, storage) -> None:
    backend = start_backend()
    rest = backend.rest
    rest.launch("loses_start")
    rest.wait_for(0, lambda s: s["ready"])
    zips_before = set(storage.files("loses_start"))
    assert rest.set_state(0, "started").json()["state"] == "started"
    time.sleep(1.5)  # statuses every 0.2 s disagree; the backend re-publishes its start
    assert rest.set_state(0, "stopped").status_code == 200
    (name,) = set(storage.files("loses_start")) - zips_before
    content = storage.client().get_file(storage.alice, "loses_start", name, by_name=True)
    log = zipfile.ZipFile(io.BytesIO(content)).read("simulation_0.log").decode()
    assert "STATE started" in log


def test_none_auth_mode(start_backend: BackendFactory, storage) -> None:
    backend = start_backend(NRP_AUTH="none")
    anonymous = backend.rest.as_user(None)
    assert anonymous.get("/simulation").json() == []
    sim = backend.rest.launch()  # the token still reaches storage for the clone
    assert sim["owner"] == "default-owner"
    assert anonymous.set_state(sim["simulationID"], "stopped").json()["state"] == "stopped"


def test_second_stop_during_a_stop_answers_when_it_ends(start_backend: BackendFactory) -> None:
    backend = start_backend()
    rest = backend.rest
    sim_id = rest.launch("slow_stop")["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"])
    answers: list[tuple[int, dict]] = []

    def stop() -> None:
        response = rest.set_state(sim_id, "stopped")
        answers.append((response.status_code, response.json()))

    first = threading.Thread(target=stop)
    first.start()
    time.sleep(0.4)  # the first stop now waits for the slow simserver
    stop()
    first.join(15)
    assert answers == [(200, {"state": "stopped", "ready": True, "error": None})] * 2


def test_simserver_stopped_from_outside_stops_the_simulation(start_backend: BackendFactory, storage) -> None:
    backend = start_backend(NRP_MAX_SIMULATIONS="1")
    rest = backend.rest
    zips_before = [n for n in storage.files("completes") if n.endswith(".log.zip")]
    sim_id = rest.launch("completes")["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"])
    sim_dir = Path(os.readlink(backend.data_dir / "current-simulation"))
    os.kill(simserver_pid(backend), signal.SIGTERM)  # e.g. an administrator's kill: exit code 0
    sim = rest.wait_for(sim_id, lambda s: s["state"] == "stopped", timeout=5)
    assert sim["error"] is None
    assert not sim_dir.exists()
    zips = [n for n in storage.files("completes") if n.endswith(".log.zip")]
    assert len(zips) == len(zips_before) + 1
    assert rest.launch("completes")["simulationID"] == sim_id + 1  # its slot is free again
    assert rest.set_state(sim_id + 1, "stopped").status_code == 200
