"""Per-simulation costs on the real system, the figures behind ``docs/scaling.md``.

Starts the embedded amqtt broker, a storage server and a REST server as real processes on free
ports (as ``bench_backend`` does; the storage and REST servers through ``benchmarks.scale_counters``,
which tallies storage HTTP requests and SQLite write statements in a file). For each N of
``NRP_BENCH_SCALE_SIMS`` (default ``1,4``) it launches N copies of ``bench_backend``'s
``bench_forever`` (tf_exchange whose main script runs ``nrp.run_loop(1)`` and sleeps 5 ms, forever:
two Python JSON engine processes and a transceiver function), watches them paused and then started
for ``NRP_BENCH_SCALE_WINDOW`` seconds each (default 8), and stops them. Measured per simulation:

- CPU (seconds per wall second) and memory (RSS and PSS) of the Simulation Server's process tree:
  everything the REST server spawned for it (prlimit/bwrap/setpriv wrappers, simserver, engines);
- the REST server's CPU above its idle baseline, its RSS, thread and file-descriptor growth, and the
  broker's CPU and TCP connections;
- MQTT messages per second, by topic kind, from a paho client subscribed to ``#`` (the status and
  data topics are periodic; lifecycle and runtime_error messages are counted per lifecycle);
- storage HTTP requests and bytes per lifecycle phase (launch: POST until ready; run; stop: PUT
  stopped, which uploads the logs), by route;
- SQLite write statements per phase, in the REST server (registry) and the storage server.

Then each bundled experiment of ``NRP_BENCH_SCALE_EXPERIMENTS`` (default
``mujoco_pendulum,braitenberg_vehicle``) is launched alone, watched paused for 3 s and started until
it completes (they run faster than real time, so their CPU is what one simulation takes when it
gets a core), for the memory and MQTT data traffic of real simulators.

Same-run baselines: the idle REST server, broker and storage server (no simulation); the commit
rate of a fresh registry (``hbp_nrp_backend.registry.Registry.save``) on this disk; the rate and
storage CPU of storage's token check (``GET /identity/me``); the routing rate and broker CPU per
delivery of status-sized messages to 1 and 8 subscribers, for the embedded amqtt broker and, when
installed, mosquitto. CPU per simulation is CPU seconds of its process tree
over the window's wall seconds; medians are over the simulations of a run. The bench's own polling
(GET every 50 ms while launching and stopping) reaches storage only as token checks
(``/identity/me``, cached 5 s by the REST server), listed on their own. About 90 s on 2 cores.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import requests
from tests.helpers.brokers import AmqttBroker, MosquittoBroker, mosquitto_binary
from tests.helpers.processes import ServerProcess, start_server

import nrp_experiments
from benchmarks.bench_backend import (
    FOREVER,
    TF_EXCHANGE,
    build_forever,
    child_processes,
    process_start_time,
)
from hbp_nrp_backend.registry import Registry, SimulationRecord
from hbp_nrp_backend.storage_client import StorageClient
from hbp_nrp_storage.users import UserStore

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "bench"
TIMEOUT = 60.0
POLL = 0.05
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024
COUNTED = [sys.executable, "-c", "from benchmarks.scale_counters import run; run()"]


def sims_wanted() -> list[int]:
    raw = os.environ.get("NRP_BENCH_SCALE_SIMS", "1,4")
    return [max(1, int(n)) for n in raw.split(",") if n.strip()]


def window_wanted() -> float:
    return max(2.0, float(os.environ.get("NRP_BENCH_SCALE_WINDOW", "8")))


# -- /proc -------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    found = [pid]
    for child, _ in child_processes(pid):
        found += descendants(child)
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the live processes among ``pids``."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLK_TCK


def memory(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) in MiB summed over ``pids``; PSS shares each shared page among its users."""
    rss = pss = 0.0
    for pid in pids:
        try:
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / MIB
        except OSError:
            continue
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) / 1024
                    break
        except OSError:
            pass
    return rss, pss


def status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def established(port: int) -> int:
    """TCP connections in state ESTABLISHED whose local port is ``port`` (server side)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


# -- MQTT ----------------------------------------------------------------------------------------


def topic_kind(topic: str) -> tuple[int | None, str]:
    """``(simulation id, kind)``; kinds: ``status``, ``lifecycle``, ``runtime_error``, ``data``, ``other``."""
    parts = topic.split("/")
    if "nrp_simulation" in parts:
        at = parts.index("nrp_simulation")
        rest = parts[at + 1 :]
        if rest and rest[0].isdigit():
            leaf = rest[1] if len(rest) > 1 else ""
            kind = leaf if leaf in ("status", "lifecycle", "runtime_error", "data") else "other"
            return int(rest[0]), kind
    return None, "other"


class TopicCounter:
    """Counts every message on the broker (``#``) per (simulation, kind): messages and bytes."""

    def __init__(self, host: str, port: int) -> None:
        self._lock = threading.Lock()
        self.messages: Counter[tuple[int | None, str]] = Counter()
        self.bytes: Counter[tuple[int | None, str]] = Counter()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-scale-{os.getpid()}")
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.on_connect = lambda client, *_: client.subscribe("#")
        self._client.connect(host, port)
        self._client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the broker did not acknowledge the subscription to #")

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        key = topic_kind(message.topic)
        with self._lock:
            self.messages[key] += 1
            self.bytes[key] += len(message.payload)

    def snapshot(self) -> tuple[Counter[tuple[int | None, str]], Counter[tuple[int | None, str]]]:
        with self._lock:
            return Counter(self.messages), Counter(self.bytes)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def broker_routing(
    host: str, port: int, subscribers: int, broker_pid: int | None, messages: int = 2000
) -> tuple[float, float]:
    """(deliveries per second, broker CPU microseconds per delivery) of status-sized QoS 0 messages
    from one publisher to ``subscribers`` clients subscribed to them; the Python clients of this
    process share the machine's cores with the broker, so the rate is a lower bound."""
    payload = b'{"realTime": 12.5, "simulationTime": 12.0, "state": "started", "simulationTimeLeft": 99988.0}'
    received = Counter[int]()
    lock = threading.Lock()
    done = threading.Event()
    expected = messages * subscribers
    clients = []
    for index in range(subscribers):
        ready = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}-{index}")

        def on_message(_c: Any, _u: Any, _m: mqtt.MQTTMessage, index: int = index) -> None:
            with lock:
                received[index] += 1
                if sum(received.values()) >= expected:
                    done.set()

        client.on_message = on_message
        client.on_subscribe = lambda *_, ready=ready: ready.set()
        client.on_connect = lambda c, *_: c.subscribe("probe/#")
        client.connect(host, port)
        client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("probe subscriber not subscribed")
        clients.append(client)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    publisher.connect(host, port)
    publisher.loop_start()
    cpu_before = cpu_seconds([broker_pid]) if broker_pid else 0.0
    start = time.perf_counter()
    for number in range(messages):
        publisher.publish(f"probe/nrp_simulation/{number % 100}/status", payload, qos=0)
    done.wait(30)
    elapsed = time.perf_counter() - start
    cpu = (cpu_seconds([broker_pid]) if broker_pid else 0.0) - cpu_before
    for client in [*clients, publisher]:
        client.loop_stop()
        client.disconnect()
    with lock:
        delivered = sum(received.values())
    return delivered / elapsed, cpu / max(delivered, 1) * 1e6


# -- the system ----------------------------------------------------------------------------------


@dataclass
class System:
    broker: AmqttBroker
    storage: ServerProcess
    backend: ServerProcess
    token: str
    counts: Path
    topics: TopicCounter
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    @property
    def url(self) -> str:
        return self.backend.url

    def launch(self, experiment: str) -> int:
        body = {"experimentID": experiment}
        answer = self.session.post(f"{self.url}/simulation", json=body, timeout=TIMEOUT)
        if answer.status_code != 201:
            raise RuntimeError(f"POST /simulation: {answer.status_code} {answer.text}")
        return int(answer.json()["simulationID"])

    def sim(self, sim_id: int) -> dict[str, Any]:
        answer = self.session.get(f"{self.url}/simulation/{sim_id}", timeout=TIMEOUT)
        answer.raise_for_status()
        return dict(answer.json())

    def set_state(self, sim_id: int, state: str) -> None:
        url = f"{self.url}/simulation/{sim_id}/state"
        answer = self.session.put(url, json={"state": state}, timeout=TIMEOUT)
        if answer.status_code != 200:
            raise RuntimeError(f"PUT {state} on {sim_id}: {answer.status_code} {answer.text}")

    def wait_for(self, sim_id: int, predicate: Callable[[dict[str, Any]], bool]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not predicate(self.sim(sim_id)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"simulation {sim_id} stuck\n{self.backend.text()[-3000:]}")
            time.sleep(POLL)

    def broker_pid(self) -> int | None:
        server = self.broker._server  # the helper keeps its process private
        return server.proc.pid if server is not None else None

    def trees(self) -> dict[int, list[int]]:
        """Simulation id -> its process tree (every child of the REST server, by its ``--id``)."""
        found: dict[int, list[int]] = {}
        for pid, _ in child_processes(self.backend.proc.pid):
            tree = descendants(pid)
            sim_id = next((i for i in map(simulation_of, tree) if i is not None), None)
            if sim_id is not None:
                found[sim_id] = tree
        return found

    def events(self, since: float, until: float) -> list[list[str]]:
        """Counter lines (storage and REST server) timestamped in [since, until)."""
        rows = []
        for line in self.counts.read_text().splitlines():
            parts = line.split()
            if parts and since <= float(parts[0]) < until:
                rows.append(parts[1:])
        return rows


def simulation_of(pid: int) -> int | None:
    """The ``--id`` of a ``hbp_nrp_simserver`` command line, or None."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if b"hbp_nrp_simserver" in args and b"--id" in args:
        return int(args[args.index(b"--id") + 1])
    return None


@contextmanager
def running_system(work: Path) -> Iterator[System]:
    """Broker, storage server (user, experiments) and REST server, counted; all stopped on exit.

    The REST server stops its simulations when terminated; a simserver still alive afterwards (after
    an error here) is killed with its process group, as ``bench_backend`` does.
    """
    started: list[Callable[[], object]] = []
    backend: ServerProcess | None = None
    try:
        broker = AmqttBroker()
        started.append(broker.stop)
        root = work / "storage"
        token = UserStore(root).add_user("bench")
        counts = work / "counts.log"
        counts.touch()
        env = {"NRP_BENCH_COUNT_FILE": str(counts)}
        storage = start_server([*COUNTED, "storage", "--root", str(root), "--port", "0"], env=env, cwd=ROOT)
        started.append(storage.stop)
        with StorageClient(storage.url, timeout=30) as client:
            client.upload_experiment(token, "tf_exchange", TF_EXCHANGE)
            client.upload_experiment(token, FOREVER, build_forever(work / "sources" / FOREVER))
            for name in experiments_wanted():
                client.upload_experiment(token, name, nrp_experiments.bundled_experiments_dir() / name)
        data = work / "backend"
        env |= {
            "NRP_DATA_DIR": str(data),
            "NRP_STORAGE_URL": storage.url,
            "NRP_MQTT_BROKER_ADDRESS": broker.address,
            "NRP_SIMULATION_DIR": str(data / "current-simulation"),
            "NRP_MQTT_PREFIX": PREFIX,
        }
        backend = start_server([*COUNTED, "backend", "--port", "0"], env=env, cwd=ROOT)
        started.append(lambda: backend.stop(timeout=60))
        topics = TopicCounter(broker.host, broker.port)
        started.append(topics.close)
        system = System(broker, storage, backend, token, counts, topics)
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


# -- measurements --------------------------------------------------------------------------------


@dataclass
class Sample:
    """Process figures at one moment."""

    wall: float
    sims: dict[int, tuple[float, float, float, int]]  # id -> (cpu s, rss MiB, pss MiB, processes)
    backend_cpu: float
    backend_rss: float
    backend_threads: int
    backend_fds: int
    broker_cpu: float
    storage_cpu: float
    broker_connections: int


def sample(system: System) -> Sample:
    sims = {}
    for sim_id, tree in system.trees().items():
        rss, pss = memory(tree)
        sims[sim_id] = (cpu_seconds(tree), rss, pss, len(tree))
    backend = system.backend.proc.pid
    return Sample(
        wall=time.monotonic(),
        sims=sims,
        backend_cpu=cpu_seconds([backend]),
        backend_rss=status_field(backend, "VmRSS") / 1024,
        backend_threads=status_field(backend, "Threads"),
        backend_fds=open_fds(backend),
        broker_cpu=cpu_seconds([pid]) if (pid := system.broker_pid()) else 0.0,
        storage_cpu=cpu_seconds([system.storage.proc.pid]),
        broker_connections=established(system.broker.port),
    )


@dataclass
class Window:
    """Rates over a quiet window: per-simulation CPU, memory, servers' CPU, MQTT messages."""

    seconds: float
    sim_cpu: list[float]  # one value per simulation: CPU seconds of its tree / wall seconds
    sim_rss: list[float]
    sim_pss: list[float]
    sim_processes: list[int]
    backend_cpu: float  # cores, whole window
    broker_cpu: float
    storage_cpu: float
    mqtt: dict[str, float]  # kind -> messages per second per simulation
    mqtt_bytes: dict[str, float]  # kind -> bytes per second per simulation
    last: Sample


def watch(
    system: System, seconds: float, sim_ids: list[int], until: Callable[[], bool] | None = None
) -> Window:
    """Sample every second for ``seconds`` (or until ``until()`` is true) and return the rates."""
    first = previous = sample(system)
    before, before_bytes = system.topics.snapshot()
    deadline = first.wall + seconds
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        previous = sample(system)
        if until is not None and until():
            break
    after, after_bytes = system.topics.snapshot()
    wall = previous.wall - first.wall
    sim_cpu = [
        (previous.sims[s][0] - first.sims[s][0]) / wall
        for s in sim_ids
        if s in previous.sims and s in first.sims
    ]
    kinds = sorted({kind for (sim, kind) in after if sim in sim_ids})
    per_sim = len(sim_ids) * wall
    mqtt_rates = {k: sum(after[(s, k)] - before[(s, k)] for s in sim_ids) / per_sim for k in kinds}
    byte_rates = {
        k: sum(after_bytes[(s, k)] - before_bytes[(s, k)] for s in sim_ids) / per_sim for k in kinds
    }
    live = [previous.sims[s] for s in sim_ids if s in previous.sims]
    return Window(
        seconds=wall,
        sim_cpu=sim_cpu,
        sim_rss=[v[1] for v in live],
        sim_pss=[v[2] for v in live],
        sim_processes=[v[3] for v in live],
        backend_cpu=(previous.backend_cpu - first.backend_cpu) / wall,
        broker_cpu=(previous.broker_cpu - first.broker_cpu) / wall,
        storage_cpu=(previous.storage_cpu - first.storage_cpu) / wall,
        mqtt=mqtt_rates,
        mqtt_bytes=byte_rates,
        last=previous,
    )


@dataclass
class Phase:
    """One lifecycle phase of N simulations: wall time, servers' CPU seconds, counted events."""

    name: str
    wall: float
    backend_cpu: float
    storage_cpu: float
    broker_cpu: float
    events: list[list[str]]
    mqtt: Counter[str]  # kind -> messages (all simulations)


@contextmanager
def phase(system: System, name: str, sim_ids: Callable[[], list[int]], out: list[Phase]) -> Iterator[None]:
    first = sample(system)
    start = time.time()
    before, _ = system.topics.snapshot()
    yield
    time.sleep(0.3)  # let the last messages and counter lines arrive
    end = time.time()
    last = sample(system)
    after, _ = system.topics.snapshot()
    ids = set(sim_ids())
    kinds: Counter[str] = Counter()
    for (sim, kind), count in after.items():
        if sim in ids:
            kinds[kind] += count - before[(sim, kind)]
    out.append(
        Phase(
            name=name,
            wall=end - start,
            backend_cpu=last.backend_cpu - first.backend_cpu,
            storage_cpu=last.storage_cpu - first.storage_cpu,
            broker_cpu=last.broker_cpu - first.broker_cpu,
            events=system.events(start, end),
            mqtt=kinds,
        )
    )


@dataclass
class RunResult:
    n: int
    ready_times: list[float]
    stop_times: list[float]
    paused: Window
    started: Window
    phases: list[Phase]
    before: Sample
    after_stop: Sample


def run_n(system: System, n: int, seconds: float) -> RunResult:
    phases: list[Phase] = []
    ids: list[int] = []
    time.sleep(1.0)
    before = sample(system)
    ready_times: list[float] = []
    with phase(system, "launch", lambda: ids, phases):
        start = time.perf_counter()
        ids += [system.launch(FOREVER) for _ in range(n)]
        for sim_id in ids:
            system.wait_for(sim_id, lambda s: bool(s["ready"]))
            ready_times.append(time.perf_counter() - start)
    paused = watch(system, seconds, ids)
    with phase(system, "run", lambda: ids, phases):
        for sim_id in ids:
            system.set_state(sim_id, "started")
        started = watch(system, seconds, ids)
    stop_times: list[float] = []
    with phase(system, "stop", lambda: ids, phases):
        start = time.perf_counter()
        for sim_id in ids:
            system.set_state(sim_id, "stopped")
            stop_times.append(time.perf_counter() - start)
    time.sleep(1.0)
    return RunResult(n, ready_times, stop_times, paused, started, phases, before, sample(system))


def registry_commit_rate(work: Path, count: int = 300) -> float:
    """``Registry.save`` calls per second on a fresh registry in ``work`` (one commit each)."""
    registry = Registry(work / "registry-probe")
    record = SimulationRecord(id=registry.allocate_id(), experiment_id="probe")
    start = time.perf_counter()
    for index in range(count):
        record.state = ("created", "paused", "started", "stopped")[index % 4]
        registry.save(record)
    elapsed = time.perf_counter() - start
    registry.close()
    return count / elapsed


def identity_rate(system: System, count: int = 300) -> tuple[float, float]:
    """(requests per second, storage CPU ms per request) of ``GET /identity/me`` on one keep-alive
    connection: the token check the REST server makes for each new token every 5 s."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {system.token}"
        url = f"{system.storage.url}/identity/me"
        session.get(url, timeout=TIMEOUT).raise_for_status()
        cpu = cpu_seconds([system.storage.proc.pid])
        start = time.perf_counter()
        for _ in range(count):
            session.get(url, timeout=TIMEOUT).raise_for_status()
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds([system.storage.proc.pid]) - cpu
    return count / elapsed, cpu / count * 1000


# -- report --------------------------------------------------------------------------------------


def med(values: list[float] | list[int]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def spread(values: list[float] | list[int], fmt: str = ".3f") -> str:
    if not values:
        return "-"
    return f"{med(values):{fmt}} (min {min(values):{fmt}}, max {max(values):{fmt}}, n {len(values)})"


def print_run(result: RunResult, idle_backend_cpu: float, idle_broker_cpu: float) -> None:
    n = result.n
    print(f"-- {n} simulation(s) of {FOREVER}")
    print(f"  POST to ready (s, launched back to back):     {spread(result.ready_times, '.2f')}")
    print(f"  PUT stopped, cumulative (s, one after another): {spread(result.stop_times, '.2f')}")
    for name, window in (("paused", result.paused), ("started", result.started)):
        print(f"  {name}, {window.seconds:.1f} s window:")
        print(f"    simserver tree CPU (s/s per simulation):   {spread(window.sim_cpu)}")
        print(f"    simserver tree RSS (MiB per simulation):   {spread(window.sim_rss, '.0f')}")
        print(f"    simserver tree PSS (MiB per simulation):   {spread(window.sim_pss, '.0f')}")
        print(f"    processes per simulation:                  {spread(window.sim_processes, '.0f')}")
        extra = (window.backend_cpu - idle_backend_cpu) / n
        print(f"    REST server CPU (s/s): {window.backend_cpu:.4f}; above idle, per simulation: {extra:.4f}")
        broker_extra = (window.broker_cpu - idle_broker_cpu) / n
        print(
            f"    broker CPU (s/s): {window.broker_cpu:.4f}; above idle, per simulation: {broker_extra:.4f}"
        )
        print(f"    storage CPU (s/s): {window.storage_cpu:.4f}")
        rates = ", ".join(f"{k} {v:.2f}/s ({window.mqtt_bytes[k]:.0f} B/s)" for k, v in window.mqtt.items())
        print(f"    MQTT messages per simulation: {rates or 'none'}")
    last = result.started.last
    before = result.before
    print(
        f"  REST server growth per simulation (running vs before launch): "
        f"RSS {(last.backend_rss - before.backend_rss) / n:+.1f} MiB, "
        f"threads {(last.backend_threads - before.backend_threads) / n:+.1f}, "
        f"fds {(last.backend_fds - before.backend_fds) / n:+.1f}, "
        f"broker connections {(last.broker_connections - before.broker_connections) / n:+.1f}"
    )
    after = result.after_stop
    print(
        f"  after stop vs before launch: REST RSS {after.backend_rss - before.backend_rss:+.1f} MiB, "
        f"threads {after.backend_threads - before.backend_threads:+d}, "
        f"fds {after.backend_fds - before.backend_fds:+d}, "
        f"broker connections {after.broker_connections - before.broker_connections:+d}"
    )
    print("  per simulation and phase (counts / N):")
    for ph in result.phases:
        http = [e for e in ph.events if e[0] == "http"]
        sql = [e for e in ph.events if e[0] == "sql"]
        routes: Counter[str] = Counter(f"{e[1]} {e[2]} {e[3]}" for e in http)
        bytes_in = sum(int(e[4]) for e in http) / n
        bytes_out = sum(int(e[5]) for e in http) / n
        tables: Counter[str] = Counter(f"{e[1]}:{e[3]}" for e in sql)
        print(
            f"    {ph.name:<6} wall {ph.wall:5.2f} s; CPU s per simulation: REST {ph.backend_cpu / n:.3f}, "
            f"storage {ph.storage_cpu / n:.3f}, broker {ph.broker_cpu / n:.3f}"
        )
        print(
            f"           storage requests {len(http) / n:.1f} ({bytes_in / 1024:.1f} KiB in, "
            f"{bytes_out / 1024:.1f} KiB out): "
            + (", ".join(f"{k} x{v / n:g}" for k, v in sorted(routes.items())) or "none")
        )
        print(
            f"           SQLite writes {len(sql) / n:.1f}: "
            + (", ".join(f"{k} x{v / n:g}" for k, v in sorted(tables.items())) or "none")
        )
        messages = ", ".join(f"{k} {v / n:g}" for k, v in sorted(ph.mqtt.items()))
        print(f"           MQTT messages: {messages or 'none'}")


def experiments_wanted() -> list[str]:
    raw = os.environ.get("NRP_BENCH_SCALE_EXPERIMENTS", "mujoco_pendulum,braitenberg_vehicle")
    return [name.strip() for name in raw.split(",") if name.strip()]


@dataclass
class Profile:
    """One bundled experiment, launched alone: ready time, memory paused, CPU started, bytes."""

    name: str
    ready: float
    paused: Window
    started: Window
    final_state: str
    archive_bytes: int
    log_zip_bytes: int


def profile_experiment(system: System, name: str, seconds: float) -> Profile:
    """Launch ``name``, watch it paused (3 s) and started (until it completes or ``seconds``), stop it."""
    start_time = time.time()
    start = time.perf_counter()
    sim_id = system.launch(name)
    system.wait_for(sim_id, lambda s: bool(s["ready"]))
    ready = time.perf_counter() - start
    paused = watch(system, 3.0, [sim_id])
    system.set_state(sim_id, "started")
    started = watch(system, seconds, [sim_id], until=lambda: system.sim(sim_id)["state"] != "started")
    final_state = str(system.sim(sim_id)["state"])
    system.set_state(sim_id, "stopped")
    time.sleep(0.3)
    http = [e for e in system.events(start_time, time.time()) if e[0] == "http"]
    archive = sum(int(e[5]) for e in http if e[1] == "GET" and e[2].endswith("/archive"))
    uploaded = sum(int(e[4]) for e in http if e[1] == "POST")
    return Profile(name, ready, paused, started, final_state, archive, uploaded)


def print_profile(profile: Profile) -> None:
    paused, started = profile.paused, profile.started
    print(
        f"  {profile.name:<20} ready {profile.ready:5.2f} s; paused: RSS {med(paused.sim_rss):4.0f} MiB, "
        f"PSS {med(paused.sim_pss):4.0f} MiB, {med(paused.sim_processes):.0f} processes, "
        f"CPU {med(paused.sim_cpu):.3f} s/s; started ({started.seconds:.1f} s, then {profile.final_state}): "
        f"CPU {med(started.sim_cpu):.3f} s/s, RSS {med(started.sim_rss):4.0f} MiB, "
        f"REST CPU {started.backend_cpu:.4f} s/s, broker CPU {started.broker_cpu:.4f} s/s, "
        f"status {started.mqtt.get('status', 0.0):.2f}/s, data {started.mqtt.get('data', 0.0):.2f}/s "
        f"({started.mqtt_bytes.get('data', 0.0):.0f} B/s); archive {profile.archive_bytes / 1024:.0f} KiB, "
        f"log zip {profile.log_zip_bytes / 1024:.0f} KiB"
    )


def mosquitto_routing(work: Path) -> dict[int, tuple[float, float]]:
    """The same routing probe on a mosquitto of its own, when mosquitto is installed."""
    if mosquitto_binary() is None:
        return {}
    folder = work / "mosquitto"
    folder.mkdir()
    broker = MosquittoBroker(folder)
    try:
        pid = broker._proc.pid if broker._proc is not None else None
        # mosquitto needs ten times the messages for its CPU time to show at the kernel's 10 ms ticks
        return {k: broker_routing(broker.host, broker.port, k, pid, messages=20000) for k in (1, 8)}
    finally:
        broker.stop()


def print_routing(kind: str, routing: dict[int, tuple[float, float]]) -> None:
    for subscribers, (rate, cpu) in routing.items():
        print(
            f"  {kind} routing, status-sized QoS 0, {subscribers} subscriber(s): {rate:6.0f} deliveries/s, "
            f"broker CPU {cpu:6.1f} us per delivery"
        )


def main() -> None:
    counts = sims_wanted()
    seconds = window_wanted()
    load = os.getloadavg()
    print(
        f"N = {counts}, {seconds:g} s windows; load average {load[0]:.2f} on {os.cpu_count()} CPUs; "
        f"{os.sysconf('SC_PHYS_PAGES') * PAGE / 1024**3:.1f} GiB"
    )
    work = Path(tempfile.mkdtemp(prefix="nrp-bench-scale-"))
    results: list[RunResult] = []
    profiles: list[Profile] = []
    experiments = experiments_wanted()
    try:
        commit_rate = registry_commit_rate(work)
        with running_system(work) as system:
            warm_up = system.launch("tf_exchange")  # first clone, first spawn, page cache
            system.wait_for(warm_up, lambda s: bool(s["ready"]))
            system.set_state(warm_up, "stopped")
            time.sleep(2.0)
            idle = watch(system, 5.0, [])
            idle_sample = idle.last
            for n in counts:
                results.append(run_n(system, n, seconds))
            for name in experiments:
                profiles.append(profile_experiment(system, name, seconds))
            pid = system.broker_pid()
            routing = {k: broker_routing(system.broker.host, system.broker.port, k, pid) for k in (1, 8)}
            identity = identity_rate(system)
        mosquitto = mosquitto_routing(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("baselines (same run):")
    print(
        f"  idle REST server: CPU {idle.backend_cpu:.4f} s/s, RSS {idle_sample.backend_rss:.0f} MiB, "
        f"{idle_sample.backend_threads} threads, {idle_sample.backend_fds} fds"
    )
    print(
        f"  idle broker (amqtt): CPU {idle.broker_cpu:.4f} s/s; idle storage: CPU {idle.storage_cpu:.4f} s/s"
    )
    print(f"  registry commits (Registry.save, WAL, this disk): {commit_rate:.0f}/s")
    print(
        f"  storage GET /identity/me, one keep-alive client: {identity[0]:.0f}/s, "
        f"storage CPU {identity[1]:.2f} ms per request"
    )
    print_routing("amqtt (embedded)", routing)
    print_routing("mosquitto", mosquitto)
    for result in results:
        print_run(result, idle.backend_cpu, idle.broker_cpu)
    if profiles:
        print("-- bundled experiments, one at a time (median over 1 simulation):")
    for profile in profiles:
        print_profile(profile)


if __name__ == "__main__":
    main()
