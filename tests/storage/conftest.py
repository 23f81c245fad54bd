"""Fixtures: a real storage server process on port 0, users created through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.helpers.processes import ServerProcess, start_server

NRP = [sys.executable, "-c", "from nrp_cli.main import cli; cli()"]

#: Small limits so the bad-input tests stay fast.
LIMIT_ENV = {
    "NRP_STORAGE_MAX_UPLOAD_MB": "8",
    "NRP_STORAGE_ZIP_MAX_MB": "4",
    "NRP_STORAGE_ZIP_MAX_FILES": "50",
    "NRP_STORAGE_ZIP_MAX_RATIO": "100",
}


def nrp(
    *args: str, env: dict[str, str] | None = None, check: bool = True, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``nrp`` command line."""
    import os

    full_env = dict(os.environ)
    full_env.update(env or {})
    result = subprocess.run(
        [*NRP, *args], capture_output=True, text=True, env=full_env, timeout=60, input=input_text
    )
    if check and result.returncode != 0:
        raise AssertionError(f"nrp {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def add_user(root: Path, name: str) -> str:
    return nrp("user", "add", name, "--root", str(root)).stdout.strip()


def start_storage(
    root: Path, templates: Path | None = None, env: dict[str, str] | None = None
) -> ServerProcess:
    full_env = dict(LIMIT_ENV)
    if templates is not None:
        full_env["NRP_STORAGE_TEMPLATES"] = str(templates)
    full_env.update(env or {})
    return start_server([*NRP, "storage", "--root", str(root), "--port", "0"], env=full_env)


def make_templates(folder: Path) -> Path:
    """A small template catalogue shaped like nrp-core's ``tf_exchange``."""
    tf = folder / "tf_exchange"
    (tf / "resources" / "nested").mkdir(parents=True)
    base = {"SimulationName": "tf_exchange", "SimulationTimeout": 1, "EngineConfigs": []}
    (tf / "simulation_config.json").write_text(json.dumps(base))
    (tf / "simulation_config_grpc.json").write_text(json.dumps({**base, "variant": "grpc"}))
    (tf / "simulation_config_datatransfer.json").write_text(json.dumps({**base, "variant": "dt"}))
    (tf / "main_script.py").write_text("print('main')\n")
    (tf / "Makefile").write_text("all:\n")
    (tf / "resources" / "nested" / "model.json").write_text("{}")
    (tf / "resources" / "empty").mkdir()
    return folder


@dataclass
class Storage:
    """A running storage server with two users."""

    server: ServerProcess
    root: Path
    alice: str
    bob: str

    @property
    def url(self) -> str:
        return self.server.url

    def session(self, token: str | None = None) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token or self.alice}"
        return session


@pytest.fixture(scope="session")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storage]:
    base = tmp_path_factory.mktemp("storage")
    root = base / "root"
    templates = make_templates(base / "templates")
    alice = add_user(root, "alice")
    bob = add_user(root, "bob")
    server = start_storage(root, templates)
    try:
        yield Storage(server, root, alice, bob)
    finally:
        server.stop()
    # no request of the whole session, bad input included, ended in an unexpected error (500)
    assert "unexpected error" not in server.text(), server.text()


@pytest.fixture
def alice(storage: Storage) -> requests.Session:
    with storage.session(storage.alice) as session:
        yield session


_counter = iter(range(10**6))


@pytest.fixture
def exp(storage: Storage, alice: requests.Session) -> str:
    """A fresh empty experiment owned by alice."""
    name = f"exp{next(_counter)}"
    response = alice.put(f"{storage.url}/storage/{name}")
    assert response.status_code == 200, response.text
    return name
