"""Every error rendered as JSON ``{"message", "type", "data"}`` with its status code, through
Flask's test client: no processes needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from hbp_nrp_backend.app import create_app
from hbp_nrp_backend.config import load_backend_config
from hbp_nrp_backend.errors import ApiError, ClientError


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    config = load_backend_config({"NRP_DATA_DIR": str(tmp_path)})
    app = create_app(config, storage=object(), start=False)

    @app.route("/boom")
    def boom() -> None:
        raise RuntimeError("kaputt")

    @app.route("/typed")
    def typed() -> None:
        raise ApiError("Could not create symlink to temp simulation folder. nope", 500, data="detail")

    @app.route("/client")
    def client() -> None:
        raise ClientError("bad input")

    return app


def test_error_mapping(app: Flask) -> None:
    client = app.test_client()
    generic = client.get("/boom")
    assert generic.status_code == 500 and generic.content_type == "application/json"
    assert generic.json == {"message": "Internal server error: kaputt", "type": "General error", "data": None}
    typed = client.get("/typed")
    assert typed.status_code == 500
    assert typed.json == {
        "message": "Could not create symlink to temp simulation folder. nope",
        "type": "Server Error",
        "data": "detail",
    }
    assert client.get("/client").json == {"message": "bad input", "type": "Client error", "data": None}
    assert client.get("/client").status_code == 400


def test_backend_imports_neither_simserver_nor_storage(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from hbp_nrp_backend.app import create_app\n"
        "import hbp_nrp_backend.server, nrp_cli.backend_commands\n"
        "create_app(storage=object(), start=False)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('hbp_nrp_simserver', 'hbp_nrp_storage'))))\n"
    )
    env = {"NRP_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
