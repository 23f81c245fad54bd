"""Fixtures: a real broker, a real storage server with two users and experiments, REST servers.

Every REST server is a real ``nrp backend --port 0`` process. Simulations use the stand-in
simserver of ``fixtures/fake_simserver.py`` (``NRP_SIMSERVER_MODULE``); each experiment's
``fake.json`` tells it how to behave.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from hbp_nrp_backend.storage_client import StorageClient
from tests.helpers.brokers import BrokerProcess, broker_kinds, start_broker
from tests.helpers.processes import ServerProcess, free_port, start_server
from tests.helpers.waiting import HANG, wait_until

REPO = Path(__file__).resolve().parents[2]
NRP = [sys.executable, "-m", "nrp_cli.main"]
FAKE_SIMSERVER = "tests.backend.fixtures.fake_simserver"
#: The file (in its simulation folder) whose creation lets a ``slow_stop`` stand-in finish its stop.
STOP_GATE = "release-stop"

#: The fields of a simulation's REST representation, in the order the REST server sends them.
SIMULATION_FIELDS = (
    "state",
    "simulationID",
    "experimentConfiguration",
    "mainScript",
    "owner",
    "creationDate",
    "experimentID",
    "ctxId",
    "MQTTPrefix",
    "ready",
    "error",
    "node",
)

#: Experiments created for alice: name -> fake.json behaviour.
EXPERIMENTS: dict[str, dict[str, Any]] = {
    "my_cloned_experiment": {},
    "exit_one": {"exit_after": 0.8, "exit_code": 1},
    "exit_seven": {"exit_after": 0.8, "exit_code": 7},
    "slow_stop": {"stop_gate": STOP_GATE},
    "stubborn": {"ignore_sigterm": True},
    "completes": {"complete_after": 0.3},
    "loses_start": {"drop_first_start": True},
    "script_error": {
        "runtime_error": {
            "sim_id": "0",
            "msg": "boom",
            "error_type": "Runtime",
            "fileName": "main_script.py",
            "line_number": 3,
            "offset": -1,
            "line_text": "raise RuntimeError('boom')",
        }
    },
}


def nrp(*args: str, env: dict[str, str] | None = None) -> str:
    """Run the real ``nrp`` command line and return its stdout."""
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run([*NRP, *args], capture_output=True, text=True, env=full_env, timeout=60)
    assert result.returncode == 0, f"nrp {args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def make_experiment(folder: Path, behaviour: dict[str, Any]) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "simulation_config.json").write_text(
        json.dumps({"SimulationName": folder.name, "SimulationTimeout": 1, "EngineConfigs": []})
    )
    (folder / "main_script.py").write_text("while True:\n    nrp.run_loop()\n")
    (folder / "fake.json").write_text(json.dumps(behaviour))
    (folder / "old.log").write_text("a log of an earlier run: never cloned\n")
    (folder / "sub" / "s.txt").write_text("nested\n")
    return folder


@dataclass
class Storage:
    """The storage server, its root, and the tokens of alice and bob."""

    server: ServerProcess
    root: Path
    port: int
    alice: str
    bob: str

    @property
    def url(self) -> str:
        return self.server.url

    def client(self) -> StorageClient:
        return StorageClient(self.url, timeout=10)

    def files(self, experiment: str, token: str | None = None) -> list[str]:
        listing = self.client().get_files_list(token or self.alice, experiment)
        return sorted(entry["name"] for entry in listing)

    def restart(self) -> None:
        self.server.stop()
        self.server = start_storage(self.root, self.port)


def start_storage(root: Path, port: int) -> ServerProcess:
    return start_server([*NRP, "storage", "--root", str(root), "--port", str(port)])


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    kind = "mosquitto" if "mosquitto" in broker_kinds() else "amqtt"
    process = start_broker(kind, tmp_path_factory.mktemp("backend-broker"))
    yield process
    process.stop()


def _storage(tmp_path_factory: pytest.TempPathFactory) -> Storage:
    root = tmp_path_factory.mktemp("storage")
    port = free_port()
    server = start_storage(root, port)
    alice = nrp("user", "add", "alice", "--root", str(root)).strip()
    bob = nrp("user", "add", "bob", "--root", str(root)).strip()
    storage = Storage(server, root, port, alice, bob)
    sources = tmp_path_factory.mktemp("experiments")
    client = storage.client()
    for name, behaviour in EXPERIMENTS.items():
        client.upload_experiment(alice, name, make_experiment(sources / name, behaviour))
    return storage


@pytest.fixture(scope="session")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storage]:
    """The session's storage server (never restarted: use ``own_storage`` for that)."""
    storage = _storage(tmp_path_factory)
    yield storage
    storage.server.stop()


@pytest.fixture
def own_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storage]:
    """A storage server of this test only, which it may stop and restart on the same port."""
    storage = _storage(tmp_path_factory)
    yield storage
    storage.server.stop()


class Rest:
    """A small client of one REST server, as a given user."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.token = token

    def as_user(self, token: str | None) -> Rest:
        return Rest(self.url, token)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(extra or {})
        return headers

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> requests.Response:
        kw.setdefault("timeout", 30)
        return requests.request(method, self.url + path, headers=self.headers(headers), **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.request("POST", path, json=body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.request("PUT", path, json=body, **kw)

    def launch(self, experiment: str = "my_cloned_experiment", **fields: Any) -> dict[str, Any]:
        response = self.post("/simulation", {"experimentID": experiment, **fields})
        assert response.status_code == 201, response.text
        return response.json()

    def set_state(self, sim_id: int, state: str) -> requests.Response:
        return self.put(f"/simulation/{sim_id}/state", {"state": state})

    def wait_for(
        self, sim_id: int, predicate: Callable[[dict[str, Any]], bool], timeout: float = HANG
    ) -> dict[str, Any]:
        """Poll ``GET /simulation/<id>`` until ``predicate`` holds; return that representation."""
        last: list[dict[str, Any]] = []

        def matches() -> dict[str, Any] | None:
            last[:] = [self.get(f"/simulation/{sim_id}").json()]
            return last[0] if predicate(last[0]) else None

        try:
            return wait_until(matches, timeout, f"simulation {sim_id} to match", interval=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last: {last[0] if last else None}") from None


@dataclass
class Backend:
    """A running REST server process with its data folder."""

    server: ServerProcess
    data_dir: Path
    env: dict[str, str]
    rest: Rest

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def spool(self) -> Path:
        return self.data_dir / "backend" / "spool"


@dataclass
class BackendFactory:
    broker: BrokerProcess
    storage_url: str
    token: str
    tmp: Path
    started: list[Backend] = field(default_factory=list)

    def __call__(self, data_dir: Path | None = None, storage_url: str | None = None, **env: str) -> Backend:
        data_dir = data_dir or Path(os.path.join(self.tmp, f"data{len(self.started)}"))
        full_env = {
            "NRP_DATA_DIR": str(data_dir),
            "NRP_STORAGE_URL": storage_url or self.storage_url,
            "NRP_MQTT_BROKER_ADDRESS": self.broker.address,
            "NRP_SIMSERVER_MODULE": FAKE_SIMSERVER,
            "NRP_SIMULATION_DIR": str(data_dir / "current-simulation"),
            "NRP_STOP_GRACE": "2",
            "NRP_LOG_SPOOL_RETRY": "0.5",
            "NRP_SANDBOX": "none",  # the fake simserver's tests; tests/backend/test_sandbox.py sandboxes
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **env,
        }
        server = start_server([*NRP, "backend", "--port", "0"], env=full_env)
        backend = Backend(server, data_dir, full_env, Rest(server.url, self.token))
        self.started.append(backend)
        return backend

    def restart(self, backend: Backend) -> Backend:
        server = start_server([*NRP, "backend", "--port", "0"], env=backend.env)
        fresh = Backend(server, backend.data_dir, backend.env, Rest(server.url, self.token))
        self.started.append(fresh)
        return fresh

    def stop_all(self) -> None:
        for backend in self.started:
            backend.server.stop(timeout=30)


@pytest.fixture
def start_backend(broker: BrokerProcess, storage: Storage, tmp_path: Path) -> Iterator[BackendFactory]:
    """``start_backend(**env)`` starts a REST server on the session's broker and storage."""
    factory = BackendFactory(broker, storage.url, storage.alice, tmp_path)
    yield factory
    factory.stop_all()
