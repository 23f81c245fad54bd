"""The storage server's registry with two real REST servers: both are offered, and both are used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from tests.backend.conftest import NRP, BackendFactory, make_experiment, nrp
from tests.helpers.brokers import BrokerProcess
from tests.helpers.processes import start_server
from tests.helpers.waiting import wait_until


def _wait(check: Any, what: str, timeout: float = 30.0) -> Any:
    return wait_until(check, timeout=timeout, message=what)


def test_two_rest_servers_are_offered_and_used(broker: BrokerProcess, tmp_path: Path) -> None:
    root = tmp_path / "root"
    alice = nrp("user", "add", "alice", "--root", str(root)).strip()
    servers = tmp_path / "servers.json"
    servers.write_text('{"servers": {}}')
    storage = start_server(
        [*NRP, "storage", "--root", str(root), "--port", "0", "--backends-file", str(servers)],
        env={"NRP_BACKENDS_POLL_INTERVAL": "0.2"},
    )
    factory = BackendFactory(broker, storage.url, alice, tmp_path)
    try:
        from hbp_nrp_backend.storage_client import StorageClient

        with StorageClient(storage.url, timeout=10) as client:
            client.upload_experiment(alice, "demo", make_experiment(tmp_path / "src" / "demo", {}))
        first, second = factory(), factory()
        # one simulation each (maxSimulations defaults to 1, the original's rule)
        servers.write_text(
            json.dumps({"servers": {"a": {"internalIp": first.url}, "b": {"internalIp": second.url}}})
        )
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {alice}"

        def available() -> list[dict[str, Any]]:
            return api.get(f"{storage.url}/proxy/availableServers", timeout=10).json()

        assert sorted(e["id"] for e in _wait(lambda: len(available()) == 2 and available(), "both")) == [
            "a",
            "b",
        ]

        def launch_on_first_available() -> tuple[str, int]:
            """What the frontend's Initialize does: the first available server, then POST /simulation."""
            entry = available()[0]
            url = api.get(f"{storage.url}/proxy/server/{entry['id']}", timeout=10).json()["nrp-services"]
            response = api.post(
                f"{url}/simulation",
                json={"experimentID": "demo", "experimentConfiguration": "simulation_config.json"},
                timeout=30,
            )
            assert response.status_code == 201, response.text
            return entry["id"], response.json()["simulationID"]

        used_first, _ = launch_on_first_available()
        other = "b" if used_first == "a" else "a"
        _wait(lambda: [e["id"] for e in available()] == [other], "the busy server to drop out")
        used_second, _ = launch_on_first_available()
        assert used_second == other

        def joinable_servers() -> list[str]:
            listed = api.get(f"{storage.url}/proxy/storage/experiments", params={"filter": "demo"}).json()
            return sorted(j["server"] for j in listed[0]["joinableServers"])

        _wait(lambda: joinable_servers() == ["a", "b"], "a joinable simulation on each server")
        assert available() == []
        # a server that stops answering is reported down, not an error page
        second.server.stop(timeout=30)
        down = _wait(lambda: api.get(f"{storage.url}/proxy/serversWithNoBackend").json(), "b to be down")
        assert [d["id"] for d in down] == ["b"]
        assert _wait(lambda: joinable_servers() == ["a"], "only a's simulation to stay joinable")
    finally:
        factory.stop_all()
        storage.stop()
