"""The routes the NRP frontend needs from storage: login and 477, static files, templates, rename,
scan, file delete, identity extras, and the backend registry (against stand-in REST servers)."""

from __future__ import annotations

import http.server
import json
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers.waiting import wait_until
from tests.storage.conftest import add_user, make_templates, nrp, start_storage

INDEX = b"<!doctype html><title>NRP test build</title>"
SCRIPT = b"console.log('bundle');"


@dataclass
class FakeBackend:
    """A stand-in REST server: ``GET /simulation`` answers ``simulations``; tokens are recorded."""

    simulations: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> str:
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                backend.tokens.append(self.headers.get("Authorization", ""))
                body = json.dumps(backend.simulations).encode()
                self.send_response(200 if self.path == "/simulation" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Site:
    url: str
    root: Path
    alice: str
    bob: str
    backend: FakeBackend
    servers_file: Path

    def api(self, token: str | None = None) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token or self.alice}"
        return session


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("frontend-api")
    root = base / "root"
    build = base / "build"
    (build / "static" / "js").mkdir(parents=True)
    (build / "index.html").write_bytes(INDEX)
    (build / "static" / "js" / "main.js").write_bytes(SCRIPT)
    (base / "secret.txt").write_text("outside the build")
    alice = add_user(root, "alice")
    bob = add_user(root, "bob")
    nrp("user", "passwd", "alice", "--root", str(root), "--password-stdin", input_text="s3cret pass\n")
    backend = FakeBackend()
    backend_url = backend.start()
    with socket_free_url() as dead_url:
        servers_file = base / "servers.json"
        servers_file.write_text(
            json.dumps(
                {
                    "servers": {
                        "dead": {"internalIp": dead_url, "nrp-services": "http://public.invalid/dead"},
                    }
                }
            )
        )
        server = start_storage(
            root,
            make_templates(base / "templates"),
            env={
                "NRP_FRONTEND_DIR": str(build),
                "NRP_BACKENDS": f"one={backend_url}",
                "NRP_BACKENDS_FILE": str(servers_file),
                "NRP_BACKENDS_POLL_INTERVAL": "0.2",
            },
        )
    try:
        yield Site(server.url, root, alice, bob, backend, servers_file)
    finally:
        server.stop()
        backend.stop()
    assert "unexpected error" not in server.text(), server.text()


class socket_free_url:  # noqa: N801 - used as a context manager
    """A URL on a port nobody listens on."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def __exit__(self, *args: object) -> None:
        pass


# login and 477


@pytest.mark.parametrize("header", [None, "Bearer no-token", "Bearer unknown", "Bearer", "Basic x y"])
def test_proxy_routes_answer_477_without_a_valid_token(site: Site, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = requests.get(f"{site.url}/proxy/storage/experiments", headers=headers)
    assert response.status_code == 477
    body = response.json()
    assert body["url"] == "/authentication/loginpage?origin=FS" and body["mode"] == "local"
    assert body["message"] == "Authentication required"
    # our own clients keep their 401 on the unprefixed routes
    assert requests.get(f"{site.url}/storage/experiments", headers=headers).status_code == 401


def test_login_page_keeps_client_id_and_redirect_uri_escaped(site: Site) -> None:
    redirect = 'http://localhost:9000/experiments-overview?a=1"><script>alert(1)</script>'
    response = requests.get(
        f"{site.url}/proxy/authentication/loginpage",
        params={"origin": "FS", "client_id": "nrp-frontend", "redirect_uri": redirect},
    )
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert 'name="client_id" value="nrp-frontend"' in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'type="password"' in page and 'fetch("authenticate"' in page


def test_authenticate_gives_a_token_that_works_everywhere(site: Site) -> None:
    response = requests.post(
        f"{site.url}/proxy/authentication/authenticate", json={"user": "alice", "password": "s3cret pass"}
    )
    assert response.status_code == 200, response.text
    token = response.text
    assert response.headers["Content-Type"].startswith("text/plain") and len(token) >= 16
    me = site.api(token).get(f"{site.url}/proxy/identity/me")
    assert me.json() == {"id": "alice", "displayName": "alice"}
    assert site.api(token).get(f"{site.url}/storage/identity/me").status_code == 200


def test_password_is_stored_as_a_slow_salted_hash(site: Site) -> None:
    with sqlite3.connect(site.root / ".nrp_storage.sqlite3") as db:
        (stored,) = db.execute("SELECT password_hash FROM users WHERE name = 'alice'").fetchone()
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    kind, log_n, r, _p, salt, digest = stored.split("$")
    assert int(log_n) >= 14 and int(r) >= 8 and len(bytes.fromhex(salt)) >= 16


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        (b"not json", "JSON"),
        (b"[1]", "user"),
        (json.dumps({"password": "x"}).encode(), "user"),
        (json.dumps({"user": "alice"}).encode(), "password"),
        (json.dumps({"user": "a" * 500, "password": "x"}).encode(), "user"),
        (json.dumps({"user": "alice", "password": "x" * 5000}).encode(), "password"),
        (b'{"user": "\\ud800", "password": "x"}', "user"),
        (b'{"user": "alice", "password": "\\udfff"}', "password"),
    ],
)
def test_malformed_login_bodies_are_400_naming_the_field(site: Site, body: bytes, field_name: str) -> None:
    response = requests.post(f"{site.url}/proxy/authentication/authenticate", data=body)
    assert response.status_code == 400
    assert field_name in response.json()["message"]


def test_bad_credentials_are_403_then_rate_limited(site: Site) -> None:
    url = f"{site.url}/proxy/authentication/authenticate"
    assert requests.post(url, json={"user": "nobody", "password": "x"}).status_code == 403
    statuses = [
        requests.post(url, json={"user": "bob", "password": f"guess{i}"}).status_code for i in range(6)
    ]
    assert statuses[:5] == [403] * 5  # bob has no password: nothing matches
    assert statuses[5] == 429
    limited = requests.post(url, json={"user": "bob", "password": "guess"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert "Too many failed logins" in limited.json()["message"]
    # another user is not locked out by bob's failures
    assert requests.post(url, json={"user": "alice", "password": "s3cret pass"}).status_code == 200


def test_password_change_ends_login_sessions_not_api_tokens(site: Site) -> None:
    url = f"{site.url}/proxy/authentication/authenticate"
    nrp("user", "add", "carol", "--root", str(site.root))
    nrp("user", "passwd", "carol", "--root", str(site.root), "--password-stdin", input_text="first\n")
    login = requests.post(url, json={"user": "carol", "password": "first"}).text
    api_token = nrp("user", "token", "carol", "--root", str(site.root)).stdout.strip()
    nrp("user", "passwd", "carol", "--root", str(site.root), "--password-stdin", input_text="second\n")
    assert site.api(login).get(f"{site.url}/proxy/identity/me").status_code == 477
    assert site.api(api_token).get(f"{site.url}/proxy/identity/me").status_code == 200
    assert requests.post(url, json={"user": "carol", "password": "first"}).status_code == 403
    assert requests.post(url, json={"user": "carol", "password": "second"}).status_code == 200


def test_passwd_refuses_unknown_users_and_empty_passwords(site: Site) -> None:
    unknown = nrp(
        "user", "passwd", "ghost", "--root", str(site.root), "--password-stdin", input_text="x\n", check=False
    )
    assert unknown.returncode != 0 and "no user 'ghost'" in unknown.stderr
    empty = nrp(
        "user", "passwd", "alice", "--root", str(site.root), "--password-stdin", input_text="\n", check=False
    )
    assert empty.returncode != 0 and "must not be empty" in empty.stderr


# static files of the frontend build


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/experiments-overview",
        "/experiment/tf_exchange_0",
        "/&access_token=abc",
        "/..%2Fsecret.txt",
        "/.env",
    ],
)
def test_unknown_paths_fall_back_to_index_html(site: Site, path: str) -> None:
    response = requests.get(f"{site.url}{path}")
    assert response.status_code == 200 and response.content == INDEX
    assert response.headers["Content-Type"].startswith("text/html")


def test_build_files_are_served(site: Site) -> None:
    response = requests.get(f"{site.url}/static/js/main.js")
    assert response.status_code == 200 and response.content == SCRIPT
    assert "javascript" in response.headers["Content-Type"]
    # the API stays where it was, with and without the /proxy prefix
    assert requests.get(f"{site.url}/health").json() == {"service": "healthy"}
    assert site.api().get(f"{site.url}/proxy/storage/experiments").status_code == 200
    assert requests.post(f"{site.url}/static/js/main.js").status_code in (401, 404)


# identity extras and maintenance


def test_groups_gdpr_and_maintenance(site: Site) -> None:
    api = site.api(site.bob)
    assert api.get(f"{site.url}/proxy/identity/me/groups").json() == ["hbp-sp10-user-edit-rights"]
    assert api.get(f"{site.url}/proxy/identity/gdpr").json() == {"gdpr": False}
    assert api.post(f"{site.url}/proxy/identity/gdpr").json() is True
    assert api.get(f"{site.url}/proxy/identity/gdpr").json() == {"gdpr": True}
    assert site.api().get(f"{site.url}/proxy/identity/gdpr").json() == {"gdpr": False}  # per user
    assert requests.get(f"{site.url}/proxy/maintenancemode").json() == {}


# templates, clone, rename, scan, file delete


def test_template_catalogue(site: Site) -> None:
    catalogue = site.api().get(f"{site.url}/proxy/experiments").json()
    assert set(catalogue) == {
        "tf_exchange/simulation_config.json",
        "tf_exchange/simulation_config_grpc.json",
        "tf_exchange/simulation_config_datatransfer.json",
    }
    entry = catalogue["tf_exchange/simulation_config_grpc.json"]
    assert entry["joinableServers"] == []
    config = entry["configuration"]
    assert config["experimentId"] == "tf_exchange/simulation_config_grpc.json"
    assert config["configFile"] == "simulation_config_grpc.json" and config["path"] == "tf_exchange"
    assert config["SimulationName"] == "tf_exchange" and config["variant"] == "grpc"
    assert config["SimulationDescription"] == "No description available for this experiment."
    assert config["SimulationTimeout"] == 1  # the file's value wins over the display default


def clone_template(site: Site) -> str:
    response = site.api().post(
        f"{site.url}/proxy/storage/clone", json={"expPath": "tf_exchange/simulation_config.json"}
    )
    assert response.status_code == 200, response.text
    return response.text


def read_config(site: Site, exp: str) -> dict[str, Any]:
    return json.loads((site.root / exp / "simulation_config.json").read_text())


def test_rename_sets_the_simulation_name_only(site: Site) -> None:
    exp = clone_template(site)
    url = f"{site.url}/proxy/storage/experiments/{exp}/rename"
    response = site.api().put(url, data=json.dumps({"newSimulationName": "My pendulum"}))
    assert response.status_code == 200 and response.text == "My pendulum"
    assert read_config(site, exp)["SimulationName"] == "My pendulum"
    listed = site.api().get(f"{site.url}/proxy/storage/experiments", params={"filter": exp}).json()
    assert listed[0]["configuration"]["SimulationName"] == "My pendulum" and listed[0]["id"] == exp
    # an empty name re-stamps the current one
    stamped = site.api().put(url, json={"newSimulationName": ""}).text
    assert stamped.endswith(" My pendulum") and stamped[:4].isdigit()


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'{"name": "x"}', b'{"newSimulationName": 5}', b'{"newSimulationName": "a\\nb"}'],
)
def test_malformed_rename_is_400_and_changes_nothing(site: Site, body: bytes) -> None:
    exp = clone_template(site)
    before = (site.root / exp / "simulation_config.json").read_bytes()
    response = site.api().put(f"{site.url}/proxy/storage/experiments/{exp}/rename", data=body)
    assert response.status_code == 400
    assert "newSimulationName" in response.json()["message"] or "JSON" in response.json()["message"]
    assert (site.root / exp / "simulation_config.json").read_bytes() == before


def test_rename_needs_the_owner_and_an_existing_experiment(site: Site) -> None:
    exp = clone_template(site)
    other = site.api(site.bob).put(
        f"{site.url}/proxy/storage/experiments/{exp}/rename", json={"newSimulationName": "x"}
    )
    assert other.status_code == 403
    missing = site.api().put(
        f"{site.url}/proxy/storage/experiments/nope/rename", json={"newSimulationName": "x"}
    )
    assert missing.status_code == 404 and missing.json()["message"] == "Experiment nope not found"


def test_scan_storage_adds_new_folders_and_drops_vanished_ones(site: Site) -> None:
    kept = clone_template(site)
    doomed = clone_template(site)
    (site.root / "copied_by_hand" / "sub").mkdir(parents=True)
    (site.root / "copied_by_hand" / "simulation_config.json").write_text('{"SimulationName": "by hand"}')
    shutil.rmtree(site.root / doomed)
    response = site.api(site.bob).post(f"{site.url}/proxy/storage/scanStorage")
    assert response.status_code == 200
    assert response.json() == {"addedFolders": ["copied_by_hand"], "deletedFolders": [doomed]}
    listed = {
        item["id"]: item for item in site.api(site.bob).get(f"{site.url}/proxy/storage/experiments").json()
    }
    assert listed["copied_by_hand"]["owned"] is True
    assert listed["copied_by_hand"]["configuration"]["SimulationName"] == "by hand"
    # nothing lost: alice's other experiment and its files are still hers
    assert (site.root / kept / "main_script.py").is_file()
    mine = [item["id"] for item in site.api().get(f"{site.url}/proxy/storage/experiments").json()]
    assert kept in mine and doomed not in mine
    assert site.api(site.bob).post(f"{site.url}/proxy/storage/scanStorage").json() == {
        "addedFolders": [],
        "deletedFolders": [],
    }


def test_files_tab_deletes_by_full_path_with_real_slashes(site: Site) -> None:
    exp = clone_template(site)
    nested = site.root / exp / "resources" / "nested" / "model.json"
    assert nested.is_file()
    url = f"{site.url}/proxy/storage/{exp}/{exp}/resources/nested/model.json"
    response = site.api().delete(url, params={"byname": "true", "type": "file"})
    assert response.status_code == 200, response.text
    assert not nested.exists() and (site.root / exp / "main_script.py").is_file()
    top = site.api().delete(
        f"{site.url}/proxy/storage/{exp}/{exp}/Makefile", params={"byname": "true", "type": "file"}
    )
    assert top.status_code == 200 and not (site.root / exp / "Makefile").exists()
    # a path that does not start with the experiment is refused, a missing file is 404
    other = site.api().delete(
        f"{site.url}/proxy/storage/{exp}/elsewhere/x", params={"byname": "true", "type": "file"}
    )
    assert other.status_code == 400 and exp in other.json()["message"]
    gone = site.api().delete(url, params={"byname": "true", "type": "file"})
    assert gone.status_code == 404


# backend registry


def test_registry_polls_with_the_service_identity(site: Site) -> None:
    token = wait_until(lambda: site.backend.tokens and site.backend.tokens[-1])
    assert token.startswith("Bearer ")
    me = requests.get(f"{site.url}/identity/me", headers={"Authorization": token})
    assert me.json()["id"] == "nrp-service"


def test_available_servers_and_server_entries(site: Site) -> None:
    site.backend.simulations = []
    available = wait_until(lambda: site.api().get(f"{site.url}/proxy/availableServers").json())
    assert [entry["id"] for entry in available] == ["one"]
    assert "internalIp" not in available[0]
    entry = site.api().get(f"{site.url}/proxy/server/one").json()
    assert entry["id"] == "one" and entry["nrp-services"].startswith("http://127.0.0.1:")
    dead = site.api().get(f"{site.url}/proxy/serversWithNoBackend").json()
    assert [d["id"] for d in dead] == ["dead"] and dead[0]["internalIp"].startswith("http://127.0.0.1:")
    assert dead[0]["error"]


def test_unknown_server_is_a_json_404(site: Site) -> None:
    response = site.api().get(f"{site.url}/proxy/server/nope")
    assert response.status_code == 404
    assert response.json()["message"] == "Server nope not found"
    assert response.json()["data"] == {"field": "server", "value": "nope"}


def test_busy_backend_is_not_offered_and_its_simulation_is_joinable(site: Site) -> None:
    exp = clone_template(site)
    running = {"simulationID": 3, "experimentID": exp, "state": "paused", "owner": "alice", "MQTTPrefix": ""}
    site.backend.simulations = [running, {"simulationID": 2, "experimentID": exp, "state": "stopped"}]
    wait_until(lambda: not site.api().get(f"{site.url}/proxy/availableServers").json())

    def joinable() -> list[dict[str, Any]]:
        listed = site.api().get(f"{site.url}/proxy/storage/experiments", params={"filter": exp}).json()
        return listed[0]["joinableServers"]

    assert wait_until(joinable) == [{"server": "one", "runningSimulation": running}]
    site.backend.simulations = [{**running, "state": "stopped"}]
    wait_until(lambda: not joinable())
    wait_until(lambda: site.api().get(f"{site.url}/proxy/availableServers").json())


def test_servers_file_edits_apply_live(site: Site) -> None:
    original = site.servers_file.read_text()
    try:
        extra = json.loads(original)
        extra["servers"]["two"] = {
            "internalIp": site.api().get(f"{site.url}/proxy/server/one").json()["nrp-services"],
            "maxSimulations": 2,
        }
        site.servers_file.write_text(json.dumps(extra))
        site.backend.simulations = []

        def ids() -> list[str]:
            return sorted(e["id"] for e in site.api().get(f"{site.url}/proxy/availableServers").json())

        wait_until(lambda: ids() == ["one", "two"])
        site.servers_file.write_text("{broken")  # a broken file is ignored, not an error page
        wait_until(lambda: ids() == ["one"])
    finally:
        site.servers_file.write_text(original)


# the backend's one-request clone


def test_archive_streams_the_tree_without_logs_for_readers_only(site: Site) -> None:
    import io
    import tarfile

    exp = clone_template(site)
    (site.root / exp / "run.log").write_text("log")
    (site.root / exp / "logs").mkdir()
    (site.root / exp / "logs" / "x.txt").write_text("x")
    (site.root / exp / "resources" / "old.log.zip").write_bytes(b"zip")
    response = site.api().get(f"{site.url}/storage/experiments/{exp}/archive")
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
        members = {m.name: m for m in archive.getmembers()}
        assert archive.extractfile(members["main_script.py"]).read() == b"print('main')\n"
    assert members["resources/empty"].isdir()  # empty folders are kept
    assert "run.log" not in members and "logs" not in members and "resources/old.log.zip" not in members
    assert site.api(site.bob).get(f"{site.url}/storage/experiments/{exp}/archive").status_code == 403
    missing = site.api().get(f"{site.url}/storage/experiments/nope/archive")
    assert missing.status_code == 404 and missing.json()["message"] == "Experiment nope not found"


def test_a_websocket_upgrade_reaching_storage_is_a_json_400(site: Site) -> None:
    headers = {"Upgrade": "websocket", "Connection": "Upgrade"}
    response = requests.get(f"{site.url}/", headers=headers)
    assert response.status_code == 400
    assert "gateway" in response.json()["message"]


def test_bad_frontend_folder_and_backends_are_start_errors(tmp_path: Path) -> None:
    no_index = tmp_path / "empty"
    no_index.mkdir()
    result = nrp(
        "storage", "--root", str(tmp_path / "r"), "--port", "0", "--frontend", str(no_index), check=False
    )
    assert result.returncode != 0 and "no index.html" in result.stderr
    result = nrp(
        "storage",
        "--root",
        str(tmp_path / "r"),
        "--port",
        "0",
        env={"NRP_BACKENDS": "x=ftp://a"},
        check=False,
    )
    assert result.returncode != 0 and "NRP_BACKENDS" in result.stderr and "http(s) URL" in result.stderr
