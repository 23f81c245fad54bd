"""End to end: REST server, storage server, broker and real Simulation Servers running nrp_core.

Each test drives the system over HTTP and watches MQTT, as the NRP frontend would.
"""

from __future__ import annotations

import io
import os
import signal
import zipfile

import pytest

from tests.e2e.conftest import System, engine_pids, simserver_pids
from tests.helpers.waiting import HANG, wait_until


def _ready(sim: dict) -> bool:
    return bool(sim["ready"])


def _sim_dir(system: System, backend_index: int = 0) -> str:
    link = system.backends[backend_index].data_dir / "current-simulation"
    return os.readlink(link)


def _latest_zip(system: System, experiment: str, before: list[str]) -> zipfile.ZipFile:
    new = sorted(set(system.storage.log_zips(experiment)) - set(before))
    assert new, f"no new log zip in {experiment}: {system.storage.files(experiment)}"
    data = system.storage.client().get_file(system.storage.alice, experiment, new[-1], by_name=True)
    return zipfile.ZipFile(io.BytesIO(data))


def test_full_lifecycle_with_pause_and_logs(system: System) -> None:
    backend = system.start_backend()
    rest = backend.rest
    zips_before = system.storage.log_zips("e2e_slow")

    created = rest.launch("e2e_slow")
    sim_id = created["simulationID"]
    assert created["state"] == "paused"
    rest.wait_for(sim_id, _ready)
    sim_dir = _sim_dir(system)

    assert rest.set_state(sim_id, "started").json()["state"] == "started"
    wait_until(
        lambda: any(s["simulationTime"] > 0.1 for s in system.watcher.statuses(sim_id)),
        HANG,
        "simulation time never advanced",
    )

    assert rest.set_state(sim_id, "paused").json()["state"] == "paused"

    def paused() -> list[dict]:
        return [s for s in system.watcher.statuses(sim_id) if s["state"] == "paused"]

    # the status timer keeps publishing while paused; once two paused statuses agree, the step in
    # flight when the pause arrived has ended and the script waits at the pause point
    def frozen_status() -> dict | None:
        statuses = paused()
        pairs = zip(statuses, statuses[1:], strict=False)
        agreeing = [b for a, b in pairs if a["simulationTime"] == b["simulationTime"]]
        return agreeing[0] if agreeing else None

    frozen = wait_until(frozen_status, message="two paused statuses with the same simulation time")
    count = len(paused())
    later = wait_until(lambda: paused()[count:] and paused()[-1], message="another paused status")
    assert later["simulationTime"] == frozen["simulationTime"], "simulation time moved while paused"

    assert rest.set_state(sim_id, "started").json()["state"] == "started"
    sim = rest.wait_for(sim_id, lambda s: s["state"] == "completed")
    assert sim["error"] is None
    completed = wait_until(
        lambda: [s for s in system.watcher.statuses(sim_id) if s["state"] == "completed"],
        HANG,
        "no completed",
    )
    final_status = completed[-1]
    assert final_status["simulationTime"] == pytest.approx(1.5, abs=1e-6)
    assert final_status["simulationTimeLeft"] == pytest.approx(0.0, abs=1e-6)

    answer = rest.set_state(sim_id, "stopped")
    assert answer.status_code == 200 and answer.json()["state"] == "stopped"
    assert rest.sim(sim_id)["state"] == "stopped"

    archive = _latest_zip(system, "e2e_slow", zips_before)
    names = archive.namelist()
    assert f"main_script_{sim_id}.log" in names
    assert f"simulation_{sim_id}.log" in names
    script_log = archive.read(f"main_script_{sim_id}.log").decode()
    assert "slow loop starting" in script_log and "slow loop done after 1.5 s" in script_log
    assert not simserver_pids(sim_dir)


@pytest.mark.parametrize("from_state", ["started", "paused"])
def test_stop_leaves_nothing_running(system: System, from_state: str) -> None:
    # how fast a stop answers is measured by benchmarks/bench_backend.py
    backend = system.start_backend()
    rest = backend.rest
    sim_id = rest.launch("e2e_forever")["simulationID"]
    rest.wait_for(sim_id, _ready)
    sim_dir = _sim_dir(system)
    assert rest.set_state(sim_id, "started").status_code == 200
    wait_until(
        lambda: any(s["simulationTime"] > 0.05 for s in system.watcher.statuses(sim_id)), 10, "never ran"
    )
    if from_state == "paused":
        assert rest.set_state(sim_id, "paused").status_code == 200
    assert engine_pids(sim_dir), "engine processes should be running"

    answer = rest.set_state(sim_id, "stopped")
    assert answer.status_code == 200 and answer.json()["state"] == "stopped"
    assert not simserver_pids(sim_dir)
    wait_until(lambda: not engine_pids(sim_dir), HANG, "engine processes outlived the stop")
    assert not os.path.exists(sim_dir), "the simulation directory was not removed"


def test_uncaught_simulation_timeout_completes_with_error(system: System) -> None:
    rest = system.start_backend().rest
    sim_id = rest.launch("e2e_timeout")["simulationID"]
    rest.wait_for(sim_id, _ready)
    rest.set_state(sim_id, "started")
    # The error and the completion travel on separate MQTT topics: wait for both.
    sim = rest.wait_for(sim_id, lambda s: s["state"] == "completed" and s["error"] is not None)
    assert sim["error"]["error_type"] == "SimTimeout"
    assert "exceed the timeout" in sim["error"]["msg"]
    errors = wait_until(lambda: system.watcher.errors(sim_id), HANG, "no runtime_error published")
    assert errors[0]["error_type"] == "SimTimeout" and errors[0]["sim_id"] == str(sim_id)
    assert rest.set_state(sim_id, "stopped").status_code == 200


def test_script_that_raises_reports_its_line(system: System) -> None:
    rest = system.start_backend().rest
    sim_id = rest.launch("e2e_raises")["simulationID"]
    rest.wait_for(sim_id, _ready)
    rest.set_state(sim_id, "started")
    sim = rest.wait_for(sim_id, lambda s: s["state"] == "completed" and s["error"] is not None)
    error = sim["error"]
    assert error["error_type"] == "Runtime"
    assert error["line_number"] == 4
    assert "raise ValueError" in error["line_text"]
    assert "failed on purpose" in error["msg"]
    assert error["fileName"].endswith("main_script.py")
    published = wait_until(lambda: system.watcher.errors(sim_id), HANG, "no runtime_error published")
    assert published[0]["line_number"] == 4
    assert rest.set_state(sim_id, "stopped").json()["state"] == "stopped"


def test_script_with_syntax_error_fails(system: System) -> None:
    rest = system.start_backend().rest
    zips_before = system.storage.log_zips("e2e_syntax")
    sim_id = rest.launch("e2e_syntax")["simulationID"]
    sim = rest.wait_for(sim_id, lambda s: s["state"] == "failed")
    assert sim["error"]["error_type"] == "Compile"
    assert sim["error"]["line_number"] == 2
    wait_until(
        lambda: set(system.storage.log_zips("e2e_syntax")) - set(zips_before), HANG, "logs not uploaded"
    )
    answer = rest.set_state(sim_id, "started")
    assert answer.status_code == 400 and "finalized" in answer.json()["message"]


def test_unknown_experiment_is_404_and_leaves_nothing(system: System) -> None:
    backend = system.start_backend()
    rest = backend.rest
    answer = rest.request("POST", "/simulation", json={"experimentID": "no_such_experiment"})
    assert answer.status_code == 404
    assert answer.json()["message"] == "Experiment no_such_experiment not found in storage"
    assert rest.request("GET", "/simulation").json() == []
    assert not (backend.data_dir / "current-simulation").exists()


def test_killed_simulation_server_is_detected(system: System) -> None:
    rest = system.start_backend().rest
    sim_id = rest.launch("e2e_forever")["simulationID"]
    rest.wait_for(sim_id, _ready)
    sim_dir = _sim_dir(system)
    rest.set_state(sim_id, "started")
    pids = wait_until(lambda: simserver_pids(sim_dir), HANG, "simserver not found")
    os.kill(pids[0], signal.SIGKILL)  # how fast it is detected is measured by benchmarks/bench_backend.py
    sim = rest.wait_for(sim_id, lambda s: s["state"] == "failed")
    assert sim["error"]["error_type"] == "Process"
    wait_until(lambda: not engine_pids(sim_dir), HANG, "engine processes outlived their simulation server")


def test_three_simulations_at_once(system: System) -> None:
    rest = system.start_backend().rest
    ids = [rest.launch("tf_exchange")["simulationID"] for _ in range(3)]
    assert len(set(ids)) == 3
    for sim_id in ids:
        rest.wait_for(sim_id, _ready)
        assert rest.set_state(sim_id, "started").status_code == 200
    for sim_id in ids:
        sim = rest.wait_for(sim_id, lambda s: s["state"] == "completed")
        assert sim["error"] is None
    listing = rest.request("GET", "/simulation").json()
    assert sorted(s["simulationID"] for s in listing) == sorted(ids)
    for sim_id in ids:
        assert rest.set_state(sim_id, "stopped").json()["state"] == "stopped"


def test_owner_only_and_token_required(system: System) -> None:
    rest = system.start_backend().rest
    sim_id = rest.launch("tf_exchange")["simulationID"]
    bob = rest.as_user(system.storage.bob)
    anonymous = rest.as_user(None)
    assert bob.set_state(sim_id, "started").status_code == 403
    assert bob.request("GET", f"/simulation/{sim_id}").status_code == 403
    assert anonymous.request("GET", f"/simulation/{sim_id}").status_code == 401
    assert anonymous.set_state(sim_id, "stopped").status_code == 401
    assert bob.request("GET", "/simulation").json() == []
    assert rest.set_state(sim_id, "stopped").json()["state"] == "stopped"


def test_backend_restart_fails_running_simulations_and_keeps_logs(system: System) -> None:
    backend = system.start_backend()
    rest = backend.rest
    zips_before = system.storage.log_zips("e2e_forever")
    sim_id = rest.launch("e2e_forever")["simulationID"]
    rest.wait_for(sim_id, _ready)
    sim_dir = _sim_dir(system)
    rest.set_state(sim_id, "started")
    wait_until(lambda: simserver_pids(sim_dir), HANG, "simserver not found")

    backend.server.kill()  # SIGKILL: no shutdown logic runs
    wait_until(lambda: not simserver_pids(sim_dir), HANG, "simserver outlived its backend")
    wait_until(lambda: not engine_pids(sim_dir), HANG, "engine processes outlived their simulation server")

    restarted = system.start_backend(data_dir=backend.data_dir)
    sim = restarted.rest.sim(sim_id)
    assert sim["state"] == "failed"
    assert sim["error"]["msg"] == "Backend restarted"
    wait_until(lambda: set(system.storage.log_zips("e2e_forever")) - set(zips_before), HANG, "logs lost")
    # ids never repeat across restarts
    new_id = restarted.rest.launch("tf_exchange")["simulationID"]
    assert new_id > sim_id
    assert restarted.rest.set_state(new_id, "stopped").status_code == 200
