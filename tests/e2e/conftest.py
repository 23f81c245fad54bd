"""Whole-system fixtures: real broker, real storage server, real REST servers, real Simulation Servers.

Nothing is stubbed: every simulation is a real ``hbp_nrp_simserver`` process running a
tf_exchange-style experiment through ``nrp_core`` with real engine processes. Experiments are built
from the bundled ``tf_exchange`` folder with a main script chosen per test.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import requests

import nrp_experiments
from hbp_nrp_backend.storage_client import StorageClient
from tests.helpers.brokers import BrokerProcess
from tests.helpers.processes import ServerProcess, start_server
from tests.helpers.waiting import HANG, wait_until

NRP = [sys.executable, "-m", "nrp_cli"]
_PREFIXES = itertools.count()
TF_EXCHANGE = nrp_experiments.bundled_experiments_dir() / "tf_exchange"

#: main scripts of the test experiments (all run on the tf_exchange engines and TF).
SLOW_LOOP = """\
import time
file_logger.info("slow loop starting")
while True:
    try:
        nrp.run_loop(1)
    except NRPSimulationTimeout:
        file_logger.info("slow loop done after %s s", nrp.simulation_time)
        break
    time.sleep(0.01)
"""
FOREVER = """\
import time
while True:
    nrp.run_loop(1)
    time.sleep(0.005)
"""
RAISES = """\
file_logger.info("about to fail")
nrp.run_loop(3)
value = {"a": 1}
raise ValueError("the script failed on purpose")
"""
SYNTAX_ERROR = """\
nrp.run_loop(1)
def broken(:
    pass
"""
TIMEOUT_UNCAUGHT = """\
while True:
    nrp.run_loop(10)
"""

EXPERIMENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "e2e_slow": (SLOW_LOOP, {"SimulationTimeout": 1.5}),
    "e2e_forever": (FOREVER, {"SimulationTimeout": 1000}),
    "e2e_raises": (RAISES, {}),
    "e2e_syntax": (SYNTAX_ERROR, {}),
    "e2e_timeout": (TIMEOUT_UNCAUGHT, {"SimulationTimeout": 0.25}),
}


def nrp(*args: str, env: dict[str, str] | None = None) -> str:
    """Run the real ``nrp`` command and return its stdout."""
    result = subprocess.run(
        [*NRP, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60
    )
    assert result.returncode == 0, f"nrp {args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def build_experiment(target: Path, script: str, config_changes: dict[str, Any]) -> Path:
    """A copy of tf_exchange with another main script and config values."""
    shutil.copytree(TF_EXCHANGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    config = json.loads((target / "simulation_config.json").read_text())
    config.update(config_changes)
    config["SimulationName"] = target.name
    (target / "simulation_config.json").write_text(json.dumps(config, indent=2))
    (target / "main_script.py").write_text(script)
    return target


@dataclass
class Storage:
    server: ServerProcess
    root: Path
    alice: str
    bob: str

    @property
    def url(self) -> str:
        return self.server.url

    def client(self) -> StorageClient:
        return StorageClient(self.url, timeout=10)

    def files(self, experiment: str) -> list[str]:
        return sorted(entry["name"] for entry in self.client().get_files_list(self.alice, experiment))

    def log_zips(self, experiment: str) -> list[str]:
        return [name for name in self.files(experiment) if name.endswith(".log.zip")]


@pytest.fixture(scope="session")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storage]:
    root = tmp_path_factory.mktemp("e2e-storage")
    server = start_server([*NRP, "storage", "--root", str(root), "--port", "0"])
    alice = nrp("user", "add", "alice", "--root", str(root)).strip()
    bob = nrp("user", "add", "bob", "--root", str(root)).strip()
    storage = Storage(server, root, alice, bob)
    sources = tmp_path_factory.mktemp("e2e-experiments")
    client = storage.client()
    client.upload_experiment(alice, "tf_exchange", TF_EXCHANGE)
    for name, (script, changes) in EXPERIMENTS.items():
        client.upload_experiment(alice, name, build_experiment(sources / name, script, changes))
    yield storage
    server.stop()


class StatusWatcher:
    """Records every message on ``nrp_simulation/#`` of one broker, for assertions on MQTT traffic."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.messages: list[tuple[float, str, bytes]] = []
        self._lock = threading.Lock()
        self.prefix = prefix
        client_id = f"e2e-watch-{os.getpid()}-{id(self)}"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.on_message = self._on_message
        self._client.on_connect = lambda client, *_: client.subscribe(f"{prefix}/nrp_simulation/#", qos=1)
        self._client.connect(host, port)
        self._client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((time.monotonic(), message.topic, bytes(message.payload)))

    def statuses(self, sim_id: int) -> list[dict[str, Any]]:
        topic = f"{self.prefix}/nrp_simulation/{sim_id}/status"
        with self._lock:
            payloads = [json.loads(p) for _, t, p in self.messages if t == topic and p]
        return [p for p in payloads if "state" in p]

    def errors(self, sim_id: int) -> list[dict[str, Any]]:
        topic = f"{self.prefix}/nrp_simulation/{sim_id}/runtime_error"
        with self._lock:
            return [json.loads(p) for _, t, p in self.messages if t == topic and p]

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


class Rest:
    """A small REST client of one backend, as one user."""

    def __init__(self, url: str, token: str | None, server: ServerProcess | None = None) -> None:
        self.url = url
        self.token = token
        self.server = server

    def as_user(self, token: str | None) -> Rest:
        return Rest(self.url, token, self.server)

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        kw.setdefault("timeout", 60)
        return requests.request(method, self.url + path, headers=headers, **kw)

    def launch(self, experiment: str) -> dict[str, Any]:
        answer = self.request("POST", "/simulation", json={"experimentID": experiment})
        assert answer.status_code == 201, answer.text
        return answer.json()

    def sim(self, sim_id: int) -> dict[str, Any]:
        answer = self.request("GET", f"/simulation/{sim_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def set_state(self, sim_id: int, state: str) -> requests.Response:
        return self.request("PUT", f"/simulation/{sim_id}/state", json={"state": state})

    def wait_for(
        self, sim_id: int, predicate: Callable[[dict[str, Any]], bool], timeout: float = HANG
    ) -> dict[str, Any]:
        """Poll ``GET /simulation/<id>`` until ``predicate`` holds; return that representation."""
        last: list[dict[str, Any]] = []

        def matches() -> dict[str, Any] | None:
            last[:] = [self.sim(sim_id)]
            return last[0] if predicate(last[0]) else None

        try:
            return wait_until(matches, timeout, f"simulation {sim_id} to match", interval=0.05)
        except AssertionError as exc:
            output = self.server.text()[-6000:] if self.server else ""
            raise AssertionError(f"{exc}; last: {last[0] if last else None}\nbackend:\n{output}") from None


@dataclass
class Backend:
    server: ServerProcess
    data_dir: Path
    env: dict[str, str]
    rest: Rest


@dataclass
class System:
    """One REST server on the session's storage and the test's broker, plus an MQTT watcher."""

    broker: BrokerProcess
    storage: Storage
    tmp: Path
    prefix: str
    backends: list[Backend] = field(default_factory=list)
    watcher: StatusWatcher | None = None

    def start_backend(self, data_dir: Path | None = None, **env: str) -> Backend:
        data_dir = data_dir or self.tmp / f"data{len(self.backends)}"
        full_env = {
            "NRP_DATA_DIR": str(data_dir),
            "NRP_STORAGE_URL": self.storage.url,
            "NRP_MQTT_BROKER_ADDRESS": f"{self.broker.host}:{self.broker.port}",
            "NRP_SIMULATION_DIR": str(data_dir / "current-simulation"),
            "NRP_STOP_GRACE": "5",
            "NRP_MQTT_PREFIX": self.prefix,
            **env,
        }
        server = start_server([*NRP, "backend", "--port", "0", "--verbose"], env=full_env)
        backend = Backend(server, data_dir, full_env, Rest(server.url, self.storage.alice, server))
        self.backends.append(backend)
        return backend

    def stop(self) -> None:
        for backend in self.backends:
            backend.server.stop(timeout=60)
        if self.watcher is not None:
            self.watcher.close()


@pytest.fixture
def system(mqtt_broker: BrokerProcess, storage: Storage, tmp_path: Path) -> Iterator[System]:
    """A fresh REST server (per test) on a real broker of each kind and the session's storage."""
    prefix = f"e2e{next(_PREFIXES)}"
    system = System(mqtt_broker, storage, tmp_path, prefix)
    system.watcher = StatusWatcher(mqtt_broker.host, mqtt_broker.port, prefix)
    yield system
    system.stop()


def simserver_pids(sim_dir: str) -> list[int]:
    """PIDs of live Simulation Server processes working in ``sim_dir`` (ids repeat across backends)."""
    return [pid for pid, args in _processes() if "hbp_nrp_simserver" in args and f"--dir {sim_dir} " in args]


def engine_pids(parent_dir_fragment: str) -> list[int]:
    """PIDs of live engine worker processes whose working directory contains the fragment."""
    found = []
    for pid, args in _processes():
        if "nrp_core.engines." not in args:
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if parent_dir_fragment in cwd:
            found.append(pid)
    return found


def _processes() -> list[tuple[int, str]]:
    result = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if raw and state != "Z":
            result.append((int(entry.name), raw.replace(b"\0", b" ").decode(errors="replace")))
    return result
