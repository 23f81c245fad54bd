"""REST backend benchmark on the real system: launch, stop, failure detection, GET during stops.

Starts a real storage server, the embedded amqtt broker and a real ``nrp backend`` process; every
simulation is a real Simulation Server running the bundled ``tf_exchange`` experiment through
nrp_core (the long-running cases use a copy whose main script loops forever with a small sleep).
Every figure is a median over repeated runs, printed next to the original NRP's figure and the
latency target the backend aims at. Baselines measured in the same run: spawning
``python -c pass``, importing the Simulation Server's modules in a fresh interpreter, and a bare
``GET /health`` round trip.

Runs per scenario: ``NRP_BENCH_RUNS`` (default 7), or ``--runs N`` when run as a script.
``NRP_BENCH_VERBOSE=1`` starts the REST server (and so the simservers) with ``--verbose``. States
are polled every 10 ms, the resolution of the "to ready" and "to failed" figures.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import requests
from tests.helpers.brokers import AmqttBroker
from tests.helpers.processes import ServerProcess, start_server

import nrp_experiments
from hbp_nrp_backend.simserver_process import process_carries_id
from hbp_nrp_backend.storage_client import StorageClient
from hbp_nrp_storage.users import UserStore

DEFAULT_RUNS = 7
PREFIX = "bench"
TF_EXCHANGE = nrp_experiments.bundled_experiments_dir() / "tf_exchange"
FOREVER = "bench_forever"
FOREVER_SCRIPT = """\
import time
while True:
    nrp.run_loop(1)
    time.sleep(0.005)
"""
CONCURRENT_STOPS = 3
POLL = 0.01
TIMEOUT = 60.0
NRP = [sys.executable, "-c", "from nrp_cli.main import cli; cli()"]


def runs_wanted(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--runs" in argv:
        return max(1, int(argv[argv.index("--runs") + 1]))
    return max(1, int(os.environ.get("NRP_BENCH_RUNS", DEFAULT_RUNS)))


# -- the system under test ---------------------------------------------------------------------


class StatusWatcher:
    """Keeps the last MQTT status of every simulation (``nrp_simulation/<id>/status``)."""

    def __init__(self, host: str, port: int) -> None:
        self._last: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}")
        self._client.on_message = self._on_message
        self._client.on_connect = lambda client, *_: client.subscribe(f"{PREFIX}/nrp_simulation/+/status")
        self._client.connect(host, port)
        self._client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            payload = json.loads(message.payload)
            sim_id = int(message.topic.split("/")[-2])
        except ValueError:
            return
        if isinstance(payload, dict) and "simulationTime" in payload:
            with self._lock:
                self._last[sim_id] = payload

    def simulation_time(self, sim_id: int) -> float:
        with self._lock:
            return float(self._last.get(sim_id, {}).get("simulationTime", 0.0))

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@dataclass
class System:
    backend: ServerProcess
    token: str
    watcher: StatusWatcher
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    @property
    def url(self) -> str:
        return self.backend.url

    def new_session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update(self.session.headers)
        return session

    def launch(self, experiment: str) -> int:
        answer = self.session.post(
            f"{self.url}/simulation", json={"experimentID": experiment}, timeout=TIMEOUT
        )
        if answer.status_code != 201:
            raise RuntimeError(f"POST /simulation: {answer.status_code} {answer.text}")
        return int(answer.json()["simulationID"])

    def sim(self, sim_id: int, session: requests.Session | None = None) -> dict[str, Any]:
        answer = (session or self.session).get(f"{self.url}/simulation/{sim_id}", timeout=TIMEOUT)
        if answer.status_code != 200:
            raise RuntimeError(f"GET /simulation/{sim_id}: {answer.status_code} {answer.text}")
        return answer.json()

    def set_state(self, sim_id: int, state: str, session: requests.Session | None = None) -> None:
        answer = (session or self.session).put(
            f"{self.url}/simulation/{sim_id}/state", json={"state": state}, timeout=TIMEOUT
        )
        if answer.status_code != 200 or answer.json()["state"] != state:
            raise RuntimeError(f"PUT {state} on {sim_id}: {answer.status_code} {answer.text}")

    def wait_for(self, sim_id: int, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            sim = self.sim(sim_id)
            if predicate(sim):
                return sim
            if time.monotonic() > deadline:
                raise RuntimeError(f"simulation {sim_id} stuck: {sim}\n{self.backend.text()[-4000:]}")
            time.sleep(POLL)

    def launch_ready(self, experiment: str) -> int:
        sim_id = self.launch(experiment)
        self.wait_for(sim_id, lambda s: s["ready"])
        return sim_id

    def launch_running(self) -> int:
        """A forever-looping simulation, started, whose simulation time has advanced."""
        sim_id = self.launch_ready(FOREVER)
        self.set_state(sim_id, "started")
        deadline = time.monotonic() + TIMEOUT
        while self.watcher.simulation_time(sim_id) <= 0.0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"simulation {sim_id} never advanced")
            time.sleep(POLL)
        return sim_id

    def simserver_pid(self, sim_id: int) -> int:
        """The PID of the simserver of ``sim_id``, a child of the backend process."""
        for pid, _ in child_processes(self.backend.proc.pid):
            if process_carries_id(pid, sim_id):
                return pid
        raise RuntimeError(f"no simserver process for simulation {sim_id}")


def build_forever(target: Path) -> Path:
    """tf_exchange with a main script that loops forever (and a timeout it never reaches)."""
    shutil.copytree(TF_EXCHANGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    config = json.loads((target / "simulation_config.json").read_text())
    config.update(SimulationName=target.name, SimulationTimeout=100000)
    (target / "simulation_config.json").write_text(json.dumps(config, indent=2))
    (target / "main_script.py").write_text(FOREVER_SCRIPT)
    return target


@contextmanager
def running_system(work: Path, extra_env: dict[str, str] | None = None) -> Iterator[System]:
    """Broker, storage server (with user and experiments) and REST server; all stopped on exit.

    The REST server stops its simulations when terminated; any simserver or engine still alive
    afterwards (e.g. after an error here) is killed with its process group.
    """
    started: list[Callable[[], object]] = []
    backend: ServerProcess | None = None
    try:
        broker = AmqttBroker()
        started.append(broker.stop)
        root = work / "storage"
        token = UserStore(root).add_user("bench")
        storage = start_server([*NRP, "storage", "--root", str(root), "--port", "0"])
        started.append(storage.stop)
        client = StorageClient(storage.url, timeout=30)
        client.upload_experiment(token, "tf_exchange", TF_EXCHANGE)
        client.upload_experiment(token, FOREVER, build_forever(work / "sources" / FOREVER))
        client.close()
        data = work / "backend"
        env = {
            "NRP_DATA_DIR": str(data),
            "NRP_STORAGE_URL": storage.url,
            "NRP_MQTT_BROKER_ADDRESS": broker.address,
            "NRP_SIMULATION_DIR": str(data / "current-simulation"),
            "NRP_MQTT_PREFIX": PREFIX,
            **(extra_env or {}),
        }
        verbose = ["--verbose"] if os.environ.get("NRP_BENCH_VERBOSE") else []
        backend = start_server([*NRP, "backend", "--port", "0", *verbose], env=env)
        started.append(lambda: backend.stop(timeout=60))
        watcher = StatusWatcher(broker.host, broker.port)
        started.append(watcher.close)
        system = System(backend, token, watcher)
        started.append(system.session.close)
        yield system
    finally:
        children = child_processes(backend.proc.pid) if backend is not None else []
        for stop in reversed(started):
            try:
                stop()
            except Exception as exc:  # keep cleaning up
                print(f"cleanup: {exc!r}", file=sys.stderr)
        for pid, start_time in children:
            if process_start_time(pid) == start_time:  # still the same process
                try:
                    os.killpg(pid, signal.SIGKILL)  # simservers lead their own process group
                except OSError:
                    pass


def child_processes(pid: int) -> list[tuple[int, str]]:
    """``(pid, start time)`` of the live children of ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        found += [(int(child), process_start_time(int(child))) for child in children]
    return [(child, start) for child, start in found if start]


def process_start_time(pid: int) -> str:
    """The start time field of ``/proc/<pid>/stat`` ("" if the process is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


# -- scenarios ---------------------------------------------------------------------------------


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def spawn_baseline(runs: int, code: str) -> list[float]:
    return [timed(lambda: subprocess.run([sys.executable, "-c", code], check=True)) for _ in range(runs)]


def health_baseline(system: System, runs: int) -> list[float]:
    session = requests.Session()
    session.get(f"{system.url}/health", timeout=TIMEOUT).raise_for_status()
    times = [
        timed(lambda: session.get(f"{system.url}/health", timeout=TIMEOUT).raise_for_status())
        for _ in range(runs)
    ]
    session.close()
    return times


def post_to_ready(system: System, runs: int) -> tuple[list[float], list[float]]:
    """POST tf_exchange until GET shows ready; then the stop from paused (never started)."""
    ready, stops = [], []
    for _ in range(runs):
        start = time.perf_counter()
        sim_id = system.launch("tf_exchange")
        system.wait_for(sim_id, lambda s: s["ready"])
        ready.append(time.perf_counter() - start)
        stops.append(timed(lambda: system.set_state(sim_id, "stopped")))  # noqa: B023
    return ready, stops


def stop_running(system: System, runs: int, pause_first: bool) -> list[float]:
    times = []
    for _ in range(runs):
        sim_id = system.launch_running()
        if pause_first:
            system.set_state(sim_id, "paused")
        times.append(timed(lambda: system.set_state(sim_id, "stopped")))  # noqa: B023
    return times


def failure_detection(system: System, runs: int) -> list[float]:
    """SIGKILL a running simserver; time until GET shows ``failed``."""
    times = []
    for _ in range(runs):
        sim_id = system.launch_running()
        pid = system.simserver_pid(sim_id)
        start = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        system.wait_for(sim_id, lambda s: s["state"] == "failed")
        times.append(time.perf_counter() - start)
    return times


def get_during_stops(system: System, runs: int) -> tuple[list[float], list[float], list[float]]:
    """Stop 3 running simulations at once while another thread GETs a fourth one in a loop.

    Returns the GET latencies while the stops run (all runs), the same GETs just before the stops
    (nothing stopping), and the duration of each stop request.
    """
    target = system.launch_running()
    during: list[float] = []
    idle: list[float] = []
    stops: list[float] = []
    session = system.new_session()
    try:
        with ThreadPoolExecutor(CONCURRENT_STOPS + 1) as pool:
            for _ in range(runs):
                victims = [system.launch_running() for _ in range(CONCURRENT_STOPS)]
                idle += [timed(lambda: system.sim(target, session)) for _ in range(50)]
                done = threading.Event()
                poller = pool.submit(hammer, system, target, session, done)
                time.sleep(0.05)
                try:
                    stoppers = [pool.submit(stop_alone, system, sim_id) for sim_id in victims]
                    stops += [future.result() for future in stoppers]
                finally:
                    done.set()
                during += poller.result()
    finally:
        session.close()
    system.set_state(target, "stopped")
    return during, idle, stops


def hammer(system: System, sim_id: int, session: requests.Session, done: threading.Event) -> list[float]:
    latencies = []
    while not done.is_set():
        latencies.append(timed(lambda: system.sim(sim_id, session)))
    return latencies


def stop_alone(system: System, sim_id: int) -> float:
    """Time ``PUT stopped`` on a connection of its own."""
    with system.new_session() as session:
        return timed(lambda: system.set_state(sim_id, "stopped", session))


# -- report ------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    values: list[float]
    target: float | None = None  # seconds; the median is checked against it
    original: str = ""
    baseline: tuple[str, float] | None = None  # (name, seconds): prints median / baseline

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def percentile(self, q: int) -> float:
        if len(self.values) < 20:
            return max(self.values)
        return statistics.quantiles(self.values, n=100, method="inclusive")[q - 1]

    def line(self) -> str:
        target = verdict = ""
        if self.target is not None:
            target = f"< {self.target * 1000:.0f} ms" if self.target < 1 else f"< {self.target:g} s"
            verdict = "ok" if self.median < self.target else "MISS"
            if self.median < self.target < max(self.values):
                verdict = "ok (max over)"
        ratio = f"{self.median / self.baseline[1]:6.1f}x {self.baseline[0]}" if self.baseline else ""
        return (
            f"  {self.name:<42} {len(self.values):>4} {self.median * 1000:9.1f} "
            f"{self.percentile(95) * 1000:9.1f} {max(self.values) * 1000:9.1f}  "
            f"{target:<9} {verdict:<13} {self.original:<14} {ratio}"
        )


HEADER = (
    f"  {'(times in ms)':<42} {'n':>4} {'median':>9} {'p95':>9} {'max':>9}  "
    f"{'target':<9} {'verdict':<13} {'original NRP':<14} ratio to baseline"
)


def main() -> None:
    runs = runs_wanted()
    load = os.getloadavg()
    print(f"{runs} runs per scenario; load average {load[0]:.2f} on {os.cpu_count()} CPUs")
    python_pass = spawn_baseline(runs, "pass")
    python_import = spawn_baseline(runs, "import hbp_nrp_simserver.server, nrp_core")
    work = Path(tempfile.mkdtemp(prefix="nrp-bench-backend-"))
    try:
        with running_system(work) as system:
            warm_up = system.launch_ready("tf_exchange")  # first clone, first spawn, page cache
            system.set_state(warm_up, "stopped")
            health = health_baseline(system, max(runs, 50))
            ready, stop_fresh = post_to_ready(system, runs)
            stop_started = stop_running(system, runs, pause_first=False)
            stop_paused = stop_running(system, runs, pause_first=True)
            failed = failure_detection(system, runs)
            during, idle, concurrent = get_during_stops(system, runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    spawn = ("python -c pass", statistics.median(python_pass))
    imports = ("import spawn", statistics.median(python_import))
    get = ("GET /health", statistics.median(health))
    rows = [
        Row("POST /simulation to ready (tf_exchange)", ready, 1.5, "-", imports),
        Row("PUT stopped from started", stop_started, 0.5, "about 23 s", spawn),
        Row("PUT stopped from paused (after a start)", stop_paused, 0.5, "about 23 s", spawn),
        Row("PUT stopped from paused, never started", stop_fresh, 0.5, "about 3 s", spawn),
        Row("SIGKILL of simserver to failed in GET", failed, 2.0, "about 60 s"),
        Row(f"PUT stopped, {CONCURRENT_STOPS} at once (each)", concurrent, 0.5, "serialized", spawn),
        Row("GET /simulation/<id> during those stops", during, 0.05, "blocked ~22 s", get),
        Row("GET /simulation/<id>, no stop running", idle, None, "", get),
    ]
    print(HEADER)
    for row in rows:
        print(row.line())
    print("  baselines (same run):")
    print(Row("spawn `python -c pass`", python_pass).line())
    print(Row("spawn python importing simserver, nrp_core", python_import).line())
    print(Row("GET /health, keep-alive", health).line())


if __name__ == "__main__":
    main()
