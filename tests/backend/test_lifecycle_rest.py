"""Supervision, capacity and concurrency seen through a real REST server: simserver exits and kills,
the stop grace period, the simulation limit, GETs and second stops while a stop is in progress."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import threading
import zipfile
from pathlib import Path

import pytest
import requests

from hbp_nrp_commons import mqtt
from tests.backend.conftest import STOP_GATE, Backend, BackendFactory
from tests.helpers.waiting import HANG, join, wait_until


def wait_stopping(sim_dir: Path, sim_id: int) -> None:
    """Wait until the ``slow_stop`` stand-in got its SIGTERM and waits at its stop gate."""
    log = sim_dir / f"simulation_{sim_id}.log"
    wait_until(lambda: "STOPPING" in log.read_text(), message="the stand-in to wait at its stop gate")


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


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
    listener.connect(HANG)
    listener.subscribe(mqtt.status_topic(f"exit{code}", 0), lambda t, p: statuses.append(json.loads(p)))
    try:
        rest = backend.rest
        created = rest.launch(experiment)
        assert created["MQTTPrefix"] == f"exit{code}"
        # The stand-in exits on its own 0.8 s after its start.
        sim = rest.wait_for(0, lambda s: s["state"] == "failed")
        assert sim["error"] == {
            "msg": f"Simulation Server exited with code {code}",
            "error_type": "Process",
            "exit_code": code,
        }
        wait_until(lambda: any(s.get("state") == "failed" for s in statuses), message="a failed status")
        assert statuses[-1]["state"] == "failed"  # the backend's fallback status
        assert all(
            isinstance(statuses[-1][k], float) for k in ("realTime", "simulationTime", "simulationTimeLeft")
        )
        assert not (backend.data_dir / "current-simulation").exists()  # the link went with the folder
    finally:
        listener.close()


def test_sigkill_from_outside_fails_the_simulation(start_backend: BackendFactory) -> None:
    # how fast it is detected is measured by benchmarks/bench_backend.py
    backend = start_backend()
    rest = backend.rest
    rest.launch()
    rest.wait_for(0, lambda s: s["ready"])
    sim_dir = Path(os.readlink(backend.data_dir / "current-simulation"))
    os.kill(simserver_pid(backend), signal.SIGKILL)
    sim = rest.wait_for(0, lambda s: s["state"] == "failed")
    assert sim["error"]["exit_code"] == -9 and sim["error"]["error_type"] == "Process"
    wait_until(lambda: not sim_dir.exists(), message="the simulation folder to be removed")


def test_stubborn_simserver_is_killed_after_the_grace_period(start_backend: BackendFactory) -> None:
    backend = start_backend(NRP_STOP_GRACE="1")
    rest = backend.rest
    rest.launch("stubborn")
    rest.wait_for(0, lambda s: s["ready"])
    pid = simserver_pid(backend)
    response = rest.set_state(0, "stopped")
    assert response.json() == {"state": "stopped", "ready": True, "error": None}
    assert "did not stop within 1.0 s; killing its process group" in backend.server.text()
    assert not alive(pid)


def test_capacity_and_gets_during_a_slow_stop(start_backend: BackendFactory) -> None:
    backend = start_backend(NRP_MAX_SIMULATIONS="2", NRP_STOP_GRACE="600")
    rest = backend.rest
    slow = rest.launch("slow_stop")["simulationID"]
    slow_dir = Path(os.readlink(backend.data_dir / "current-simulation"))
    other = rest.launch()["simulationID"]
    rest.wait_for(slow, lambda s: s["ready"])
    full = rest.post("/simulation", {"experimentID": "my_cloned_experiment"})
    assert full.status_code == 409
    assert full.json() == {
        "message": "Maximum number of simulations reached on this server (2); stop one first",
        "type": "Client error",
        "data": None,
    }
    results: dict[str, requests.Response] = {}

    def stop() -> None:
        results["response"] = rest.set_state(slow, "stopped")

    stopper = threading.Thread(target=stop)
    stopper.start()
    wait_stopping(slow_dir, slow)  # the stop now waits for the slow simserver, until the gate opens
    # GETs answer while the stop waits (how fast is measured by benchmarks/bench_backend.py)
    for path in (f"/simulation/{other}", f"/simulation/{slow}/state", "/simulation", "/version"):
        assert rest.get(path).status_code == 200, path
    # Still cleaning up: the slot is not free yet.
    assert rest.post("/simulation", {"experimentID": "my_cloned_experiment"}).status_code == 409
    assert stopper.is_alive() and not results  # the stop answers only once the simserver has ended
    (slow_dir / STOP_GATE).touch()
    join(stopper)
    assert results["response"].json()["state"] == "stopped"
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
    rest.wait_for(0, lambda s: s["state"] == "completed")
    rest.wait_for(0, lambda s: s["state"] == "stopped")


def test_wall_clock_limit_stops_any_simulation(start_backend: BackendFactory) -> None:
    backend = start_backend(NRP_SIMULATION_MAX_LIFETIME="1.5")
    rest = backend.rest
    rest.launch()
    rest.wait_for(0, lambda s: s["state"] == "stopped")


def test_lost_start_is_republished(start_backend: BackendFactory, storage) -> None:
    backend = start_backend()
    rest = backend.rest
    rest.launch("loses_start")
    rest.wait_for(0, lambda s: s["ready"])
    sim_log = Path(os.readlink(backend.data_dir / "current-simulation")) / "simulation_0.log"
    zips_before = set(storage.files("loses_start"))
    assert rest.set_state(0, "started").json()["state"] == "started"
    # the stand-in drops the first start; its statuses (every 0.2 s) disagree, so the backend
    # publishes its start again, and the stand-in logs the state it finally reached
    wait_until(lambda: "STATE started" in sim_log.read_text(), message="the re-published start")
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
    backend = start_backend(NRP_STOP_GRACE="600")
    rest = backend.rest
    sim_id = rest.launch("slow_stop")["simulationID"]
    sim_dir = Path(os.readlink(backend.data_dir / "current-simulation"))
    rest.wait_for(sim_id, lambda s: s["ready"])
    answers: list[tuple[int, dict]] = []

    def stop() -> None:
        response = rest.set_state(sim_id, "stopped")
        answers.append((response.status_code, response.json()))

    first = threading.Thread(target=stop)
    first.start()
    wait_stopping(sim_dir, sim_id)  # the first stop now waits for the slow simserver
    # The second stop is sent in full before the gate opens. The REST server shows no sign of
    # having read it, so in theory it could still be read after the first stop ended (then it
    # would be refused as finalized): the cleanup between the gate and the end takes far longer.
    second = http.client.HTTPConnection(backend.server.host, backend.server.port, timeout=HANG)
    body = json.dumps({"state": "stopped"})
    headers = rest.headers({"Content-Type": "application/json"})
    second.request("PUT", f"/simulation/{sim_id}/state", body, headers)
    (sim_dir / STOP_GATE).touch()
    response = second.getresponse()
    answers.append((response.status, json.loads(response.read())))
    second.close()
    join(first)
    assert answers == [(200, {"state": "stopped", "ready": True, "error": None})] * 2


def test_simserver_stopped_from_outside_stops_the_simulation(start_backend: BackendFactory, storage) -> None:
    backend = start_backend(NRP_MAX_SIMULATIONS="1")
    rest = backend.rest
    zips_before = [n for n in storage.files("completes") if n.endswith(".log.zip")]
    sim_id = rest.launch("completes")["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"])
    sim_dir = Path(os.readlink(backend.data_dir / "current-simulation"))
    os.kill(simserver_pid(backend), signal.SIGTERM)  # e.g. an administrator's kill: exit code 0
    sim = rest.wait_for(sim_id, lambda s: s["state"] == "stopped")
    assert sim["error"] is None
    assert not sim_dir.exists()
    zips = [n for n in storage.files("completes") if n.endswith(".log.zip")]
    assert len(zips) == len(zips_before) + 1
    assert rest.launch("completes")["simulationID"] == sim_id + 1  # its slot is free again
    assert rest.set_state(sim_id + 1, "stopped").status_code == 200
