"""The Ray executor on a real multi-node Ray cluster on this machine (``ray.cluster_utils``).

The cluster has a head that runs no simulation and two worker nodes with a custom resource
``nrp_sim`` (2 and 1: room for three simulations) of which one also has ``gpu_node``; each REST
server under test is a real ``nrp backend --executor ray`` process in its own Ray namespace, with
the stand-in simserver (``fixtures/fake_simserver.py``) unless a test says otherwise. The test
process is a Ray driver too, to look at the actors. Timings (how many seconds a failure takes to
show) are printed, not asserted.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import signal
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hbp_nrp_backend.simserver_process import process_carries_id
from tests.backend.conftest import REPO, BackendFactory, Storage, make_experiment
from tests.helpers.waiting import HANG, wait_until

ray = pytest.importorskip("ray", reason="Ray is installed by the dev extra (pip install -e '.[dev]')")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.ray

NAMESPACES = itertools.count()


@dataclass
class RayCluster:
    cluster: Cluster
    gpu_worker: Any  # ray._private.node.Node with nrp_sim 2 and gpu_node 1
    plain_worker: Any  # nrp_sim 1

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def actors(self, namespace: str) -> list[str]:
        return sorted(
            entry["name"]
            for entry in ray.util.list_named_actors(all_namespaces=True)
            if entry["namespace"] == namespace
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    # the nodes' workers import the stand-in simserver from this repository
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), saved]))
    head_config = {
        "health_check_initial_delay_ms": 0,
        "health_check_period_ms": 500,
        "health_check_timeout_ms": 500,
        "health_check_failure_threshold": 4,
    }
    cluster = Cluster(
        initialize_head=True, connect=False, head_node_args={"num_cpus": 1, "_system_config": head_config}
    )
    try:
        gpu_worker = cluster.add_node(num_cpus=2, resources={"nrp_sim": 2, "gpu_node": 1})
        plain_worker = cluster.add_node(num_cpus=2, resources={"nrp_sim": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace="nrp-tests", log_to_driver=False)
        yield RayCluster(cluster, gpu_worker, plain_worker)
    finally:
        ray.shutdown()
        cluster.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def ray_backend(start_backend: BackendFactory, cluster: RayCluster, **env: str) -> tuple[Any, str]:
    """A REST server on the Ray executor in a namespace of its own; returns it and the namespace."""
    namespace = f"nrp-test-{os.getpid()}-{next(NAMESPACES)}"
    settings = {
        "NRP_EXECUTOR": "ray",
        "RAY_ADDRESS": cluster.address,
        "NRP_RAY_NAMESPACE": namespace,
        "NRP_RAY_RESOURCES": '{"nrp_sim": 1}',
        "NRP_RAY_MEMORY_MB": "128",
        "NRP_RAY_PLACEMENT_TIMEOUT": "5",
    }
    backend = start_backend(**{**settings, **env})
    return backend, namespace


def upload(
    storage: Storage, tmp_path: Path, name: str, behaviour: dict[str, Any], config: dict[str, Any]
) -> None:
    """An experiment of the stand-in simserver whose simulation_config.json is ``config``."""
    folder = make_experiment(tmp_path / name, behaviour)
    (folder / "simulation_config.json").write_text(json.dumps(config))
    storage.client().upload_experiment(storage.alice, name, folder)


def simserver_alive(sim_id: int) -> bool:
    """A Simulation Server of ``sim_id`` still runs anywhere on this machine (any node)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and process_carries_id(int(entry.name), sim_id):
            cmdline = (entry / "cmdline").read_bytes()
            if b"fake_simserver" in cmdline or b"hbp_nrp_simserver" in cmdline:
                return True
    return False


def log_zips(storage: Storage, experiment: str, sim_id: int) -> list[str]:
    return [name for name in storage.files(experiment) if name.endswith(f"_simulation_{sim_id}.log.zip")]


def test_lifecycle_on_the_node_with_the_asked_resource(
    start_backend: BackendFactory, storage: Storage, cluster: RayCluster, tmp_path: Path
) -> None:
    upload(
        storage,
        tmp_path,
        "ray_gpu",
        {},
        {"SimulationName": "gpu", "RayResources": {"resources": {"gpu_node": 1}}},
    )
    backend, namespace = ray_backend(start_backend, cluster)
    rest = backend.rest
    created = rest.post("/simulation", {"experimentID": "ray_gpu"})
    assert created.status_code == 201, created.text
    sim_id = created.json()["simulationID"]
    node = created.json()["node"]
    assert node["executor"] == "ray" and node["id"] == cluster.gpu_worker.node_id, node
    assert node["id"] != cluster.cluster.head_node.node_id
    assert cluster.actors(namespace) == [f"nrp-simulation-{sim_id}"]
    for state in ("started", "paused", "started"):
        assert rest.set_state(sim_id, state).json()["state"] == state
        rest.wait_for(sim_id, lambda s, state=state: s["state"] == state)
    started = time.monotonic()
    stopped = rest.set_state(sim_id, "stopped")
    took = time.monotonic() - started
    print(f"stop through REST on the Ray executor: {took * 1000:.0f} ms")
    assert stopped.status_code == 200 and stopped.json()["state"] == "stopped", stopped.text
    (name,) = log_zips(storage, "ray_gpu", sim_id)
    archive = zipfile.ZipFile(
        io.BytesIO(storage.client().get_file(storage.alice, "ray_gpu", name, by_name=True))
    )
    assert f"simulation_{sim_id}.log" in archive.namelist()
    assert cluster.actors(namespace) == []
    assert not simserver_alive(sim_id)
    final = rest.get(f"/simulation/{sim_id}").json()
    assert final["node"]["id"] == cluster.gpu_worker.node_id and final["error"] is None, final


def test_capacity_is_the_clusters_and_requests_are_checked(
    start_backend: BackendFactory, storage: Storage, cluster: RayCluster, tmp_path: Path
) -> None:
    upload(storage, tmp_path, "ray_huge", {}, {"RayResources": {"resources": {"quantum": 1}}})
    upload(storage, tmp_path, "ray_bad", {}, {"RayResources": {"num_cpus": -2}})
    backend, namespace = ray_backend(start_backend, cluster)
    rest = backend.rest

    bad = rest.post("/simulation", {"experimentID": "ray_bad"})
    assert bad.status_code == 400 and "RayResources.num_cpus" in bad.json()["message"], bad.text
    huge = rest.post("/simulation", {"experimentID": "ray_huge"})
    assert huge.status_code == 409 and "quantum 1" in huge.json()["message"], huge.text

    ids = []
    for _ in range(3):  # nrp_sim: 2 + 1
        response = rest.post("/simulation", {"experimentID": "my_cloned_experiment"})
        assert response.status_code == 201, response.text
        ids.append(response.json()["simulationID"])
    nodes = {rest.get(f"/simulation/{sim_id}").json()["node"]["id"] for sim_id in ids}
    assert nodes == {cluster.gpu_worker.node_id, cluster.plain_worker.node_id}
    full = rest.post("/simulation", {"experimentID": "my_cloned_experiment"})
    assert full.status_code == 409 and "no room" in full.json()["message"], full.text
    assert rest.set_state(ids[0], "stopped").json()["state"] == "stopped"

    def admitted() -> Any:
        response = rest.post("/simulation", {"experimentID": "my_cloned_experiment"})
        return response if response.status_code == 201 else None

    again = wait_until(admitted, message="a launch after a stop freed a slot")  # Ray's view lags a little
    ids.append(again.json()["simulationID"])
    for sim_id in ids[1:]:
        assert rest.set_state(sim_id, "stopped").json()["state"] == "stopped"
    assert cluster.actors(namespace) == []


def test_completion_and_the_lifetime_limit_work_as_locally(
    start_backend: BackendFactory, storage: Storage, cluster: RayCluster
) -> None:
    """The simulation's own end (``completed``) reaches the REST server from the node, and the
    REST server's wall-clock limit stops a simulation on the node."""
    backend, namespace = ray_backend(start_backend, cluster, NRP_SIMULATION_MAX_LIFETIME="3")
    rest = backend.rest
    completes = rest.launch("completes")["simulationID"]
    endless = rest.launch()["simulationID"]
    rest.set_state(completes, "started")
    rest.set_state(endless, "started")
    rest.wait_for(completes, lambda s: s["state"] in ("completed", "stopped"))
    rest.wait_for(endless, lambda s: s["state"] == "stopped")
    rest.wait_for(completes, lambda s: s["state"] == "stopped")
    assert log_zips(storage, "my_cloned_experiment", endless) and log_zips(storage, "completes", completes)
    assert cluster.actors(namespace) == []


@pytest.mark.parametrize("setting", ["NRP_RAY_MQTT_ADDRESS", "NRP_RAY_STORAGE_URL"])
def test_a_node_that_cannot_reach_a_service_fails_the_launch_at_once(
    start_backend: BackendFactory, cluster: RayCluster, setting: str
) -> None:
    from tests.helpers.processes import free_port

    closed = f"127.0.0.1:{free_port()}"
    value = closed if setting == "NRP_RAY_MQTT_ADDRESS" else f"http://{closed}"
    backend, namespace = ray_backend(start_backend, cluster, **{setting: value})
    response = backend.rest.post("/simulation", {"experimentID": "my_cloned_experiment"})
    assert response.status_code == 503, response.text
    message = response.json()["message"]
    assert closed in message and setting in message, message
    (sim,) = backend.rest.get("/simulation").json()
    assert sim["state"] == "failed" and closed in sim["error"]["msg"], sim
    assert cluster.actors(namespace) == []


def test_a_killed_actor_fails_the_simulation_and_its_logs_are_saved(
    start_backend: BackendFactory, storage: Storage, cluster: RayCluster
) -> None:
    backend, namespace = ray_backend(start_backend, cluster)
    rest = backend.rest
    sim_id = rest.launch()["simulationID"]
    rest.set_state(sim_id, "started")
    actor = ray.get_actor(f"nrp-simulation-{sim_id}", namespace=namespace)
    pid = ray.get(actor.pid.remote())
    wait_until(lambda: simserver_alive(sim_id), message="the simserver to run")
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    sim = rest.wait_for(sim_id, lambda s: s["state"] == "failed")
    print(f"killed actor -> failed in {time.monotonic() - killed:.2f} s")
    assert "Ray actor died" in sim["error"]["msg"], sim
    wait_until(lambda: not simserver_alive(sim_id), message="the simserver to die with its actor")
    wait_until(lambda: log_zips(storage, "my_cloned_experiment", sim_id), message="the salvaged logs")
    assert cluster.actors(namespace) == []


def test_a_killed_node_fails_its_simulation_within_seconds(
    start_backend: BackendFactory, storage: Storage, cluster: RayCluster, tmp_path: Path
) -> None:
    doomed = cluster.cluster.add_node(num_cpus=1, resources={"nrp_sim": 1, "doomed": 1})
    cluster.cluster.wait_for_nodes()
    upload(storage, tmp_path, "ray_doomed", {}, {"RayResources": {"resources": {"doomed": 1}}})
    backend, namespace = ray_backend(start_backend, cluster)
    rest = backend.rest
    created = rest.post("/simulation", {"experimentID": "ray_doomed"})
    assert created.status_code == 201, created.text
    sim_id = created.json()["simulationID"]
    assert created.json()["node"]["id"] == doomed.node_id
    rest.set_state(sim_id, "started")
    wait_until(lambda: simserver_alive(sim_id), message="the simserver to run")
    killed = time.monotonic()
    cluster.cluster.remove_node(doomed, allow_graceful=False)
    sim = rest.wait_for(sim_id, lambda s: s["state"] == "failed")
    print(f"killed node -> failed in {time.monotonic() - killed:.2f} s")
    assert "Ray" in sim["error"]["msg"], sim
    wait_until(lambda: not simserver_alive(sim_id), message="nothing of the simulation to run on")
    assert cluster.actors(namespace) == []
    sim = rest.wait_for(sim_id, lambda s: "logs" in (s["error"] or {}))  # said once the stop has ended
    assert "left the Ray cluster" in sim["error"]["logs"], sim


def test_a_lost_bridge_fails_the_simulation_and_a_new_one_stops_its_actor(
    start_backend: BackendFactory, storage: Storage, cluster: RayCluster
) -> None:
    backend, namespace = ray_backend(start_backend, cluster)
    rest = backend.rest
    sim_id = rest.launch()["simulationID"]
    rest.set_state(sim_id, "started")
    bridge = bridge_pid(backend.server.proc.pid)
    lost = time.monotonic()
    os.kill(bridge, signal.SIGSTOP)  # a silent bridge: the heartbeat must notice and kill it
    sim = rest.wait_for(sim_id, lambda s: s["state"] == "failed")
    print(f"silent bridge -> failed in {time.monotonic() - lost:.2f} s")
    assert "Lost the connection to the Ray cluster" in sim["error"]["msg"], sim
    wait_until(lambda: not simserver_alive(sim_id), message="the new bridge to stop the simulation")
    wait_until(lambda: log_zips(storage, "my_cloned_experiment", sim_id), message="its logs")
    assert cluster.actors(namespace) == []


def bridge_pid(rest_pid: int) -> int:
    """The Ray bridge process the REST server ``rest_pid`` started."""

    def find() -> int | None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == rest_pid and b"ray_bridge" in cmdline:
                return int(entry.name)
        return None

    return wait_until(find, message="the REST server's Ray bridge")


def test_restart_stops_surviving_actors_and_unknown_ones(
    start_backend: BackendFactory, storage: Storage, cluster: RayCluster
) -> None:
    backend, namespace = ray_backend(start_backend, cluster)
    rest = backend.rest
    sim_id = rest.launch()["simulationID"]
    rest.set_state(sim_id, "started")
    wait_until(lambda: simserver_alive(sim_id), message="the simserver to run")
    backend.server.proc.kill()
    backend.server.proc.wait(HANG)

    @ray.remote
    class Stray:
        def ping(self) -> str:
            return "pong"

    stray = Stray.options(name="nrp-simulation-9999", namespace=namespace, lifetime="detached").remote()
    ray.get(stray.ping.remote())
    assert cluster.actors(namespace) == sorted([f"nrp-simulation-{sim_id}", "nrp-simulation-9999"])
    assert simserver_alive(sim_id)  # the actor outlives the REST server (until its lease runs out)

    restarted = start_backend.restart(backend)
    sim = restarted.rest.get(f"/simulation/{sim_id}").json()
    assert sim["state"] == "failed" and sim["error"]["msg"] == "Backend restarted", sim
    assert cluster.actors(namespace) == []
    assert not simserver_alive(sim_id)
    assert log_zips(storage, "my_cloned_experiment", sim_id)


def test_an_actor_whose_lease_runs_out_stops_and_uploads_by_itself(
    start_backend: BackendFactory, storage: Storage, cluster: RayCluster
) -> None:
    backend, namespace = ray_backend(start_backend, cluster, NRP_RAY_LEASE="2")
    rest = backend.rest
    sim_id = rest.launch()["simulationID"]
    rest.set_state(sim_id, "started")
    wait_until(lambda: simserver_alive(sim_id), message="the simserver to run")
    gone = time.monotonic()
    backend.server.proc.kill()  # no REST server renews the lease any more
    wait_until(lambda: not cluster.actors(namespace), message="the actor to end by itself")
    print(f"lease of 2 s ran out -> actor gone in {time.monotonic() - gone:.2f} s")
    assert not simserver_alive(sim_id)
    assert log_zips(storage, "my_cloned_experiment", sim_id)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_the_sandbox_limits_logs_and_errors_hold_on_a_node(
    start_backend: BackendFactory, storage: Storage, cluster: RayCluster, tmp_path: Path
) -> None:
    """The real Simulation Server, sandboxed on a worker node: own uid, live logs through the
    actor, the memory limit, a script's runtime error with its file and line."""
    from tests.backend.test_sandbox import SANDBOXED, UNTIL_STOPPED, console, run_to_end
    from tests.backend.test_sandbox import upload as upload_script

    backend, namespace = ray_backend(
        start_backend, cluster, **SANDBOXED, NRP_SANDBOX_MEMORY_MB="400", NRP_RAY_MEMORY_MB="400"
    )
    rest = backend.rest
    waiting = upload_script(
        storage,
        tmp_path,
        "ray_uid",
        "import os, sys\nsys.stdout.write(f'UID {os.getuid()}\\n')\n" + UNTIL_STOPPED,
    )
    sim_id = rest.launch(waiting)["simulationID"]
    assert rest.get(f"/simulation/{sim_id}").json()["node"]["id"] != cluster.cluster.head_node.node_id
    ready = rest.wait_for(sim_id, lambda s: s["ready"] or s["state"] == "failed", timeout=60)
    assert ready["state"] != "failed", ready
    assert rest.set_state(sim_id, "started").json()["state"] == "started"
    seen: list[str] = []

    def uid_line() -> str | None:
        seen[:] = [console(backend, sim_id)]
        return seen[0] if "UID " in seen[0] else None

    try:
        text = wait_until(uid_line, message="UID line")
    except AssertionError as exc:
        state = rest.get(f"/simulation/{sim_id}").json()
        raise AssertionError(f"{exc}; console: {seen[0][-2000:] if seen else None}; {state}") from None
    assert int(text.split("UID ", 1)[1].split()[0]) not in (0, os.getuid()), text
    assert rest.set_state(sim_id, "stopped").json()["state"] == "stopped"

    hog = upload_script(storage, tmp_path, "ray_memory", "hog = bytearray(5 * 1024**3)\nprint('allocated')\n")
    sim = run_to_end(backend, hog)
    assert sim["state"] == "failed" and "memory limit of 400 MiB" in sim["error"]["msg"], sim

    broken = upload_script(storage, tmp_path, "ray_error", "x = 1\nraise RuntimeError('boom on the node')\n")
    sim = run_to_end(backend, broken)
    assert sim["error"] is not None and "boom on the node" in sim["error"]["msg"], sim
    assert sim["error"]["fileName"] == "main_script.py" and sim["error"]["line_number"] == 2, sim
    assert "nrp." not in json.dumps(sim["error"]), sim  # no folder of the node in what users see
    if sim["state"] != "failed":  # a script error leaves it completed, as locally
        assert rest.set_state(sim["simulationID"], "stopped").json()["state"] == "stopped"
    assert cluster.actors(namespace) == []


def test_auto_starts_a_local_head_and_says_so(start_backend: BackendFactory, storage: Storage) -> None:
    """``RAY_ADDRESS=auto``: the REST server's bridge starts a Ray head of its own, says so, runs a
    simulation on it, and takes it down when the REST server stops."""
    backend = start_backend(NRP_EXECUTOR="ray", RAY_ADDRESS="auto", NRP_RAY_MEMORY_MB="128")
    assert "started a local Ray head" in backend.server.text(), backend.server.text()[-3000:]
    rest = backend.rest
    created = rest.post("/simulation", {"experimentID": "my_cloned_experiment"})
    assert created.status_code == 201, created.text
    sim_id = created.json()["simulationID"]
    assert created.json()["node"]["executor"] == "ray" and created.json()["node"]["id"], created.json()
    assert rest.set_state(sim_id, "started").json()["state"] == "started"
    assert rest.set_state(sim_id, "stopped").json()["state"] == "stopped"
    assert log_zips(storage, "my_cloned_experiment", sim_id)
    bridge = bridge_pid(backend.server.proc.pid)
    backend.server.stop(timeout=HANG)
    wait_until(lambda: not Path(f"/proc/{bridge}").exists(), message="the bridge (and its Ray head) to end")


def test_an_unreachable_cluster_answers_503_and_the_server_stays_up(start_backend: BackendFactory) -> None:
    from tests.helpers.processes import free_port

    nowhere = f"127.0.0.1:{free_port()}"
    backend = start_backend(NRP_EXECUTOR="ray", RAY_ADDRESS=nowhere)
    response = backend.rest.post("/simulation", {"experimentID": "my_cloned_experiment"})
    assert response.status_code == 503, response.text
    assert nowhere in response.json()["message"] and "RAY_ADDRESS" in response.json()["message"], (
        response.text
    )
    assert backend.rest.get("/simulation").json() == []  # nothing was created
    assert backend.rest.get("/health").status_code == 200


def test_an_actor_no_simulation_owns_is_swept_while_the_server_runs(
    start_backend: BackendFactory, cluster: RayCluster
) -> None:
    """Once per lease the REST server kills actors of its namespace that none of its simulations
    own (e.g. one whose start went on after the server had given up on it); its own stay."""
    backend, namespace = ray_backend(start_backend, cluster, NRP_RAY_LEASE="2")
    rest = backend.rest
    sim_id = rest.launch()["simulationID"]

    @ray.remote
    class Stray:
        def ping(self) -> str:
            return "pong"

    stray = Stray.options(name="nrp-simulation-777", namespace=namespace, lifetime="detached").remote()
    ray.get(stray.ping.remote())
    own = f"nrp-simulation-{sim_id}"
    wait_until(lambda: cluster.actors(namespace) == [own], message="the stray actor to be swept")
    assert rest.set_state(sim_id, "stopped").json()["state"] == "stopped"
    assert cluster.actors(namespace) == []
