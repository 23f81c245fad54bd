"""``nrp user add|token``, ``nrp storage`` and ``nrp experiments`` through the real command line."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import requests

from tests.helpers.processes import LISTENING
from tests.helpers.waiting import wait_until

from .conftest import NRP, nrp, start_storage


def me(url: str, token: str) -> requests.Response:
    return requests.get(f"{url}/identity/me", headers={"Authorization": f"Bearer {token}"})


def test_user_tokens_work_with_and_without_a_running_server(tmp_path: Path) -> None:
    """Tokens from ``nrp user`` work at once, whether the server runs or not, and expire."""
    root = tmp_path / "root"
    first = nrp("user", "add", "alice", "--root", str(root)).stdout.strip()
    assert len(first) >= 20 and "\n" not in first
    server = start_storage(root)
    try:
        assert me(server.url, first).json() == {"id": "alice", "displayName": "alice"}
        # while the server runs: a new user and a second token work at once
        second = nrp("user", "token", "alice", "--root", str(root)).stdout.strip()
        bob = nrp("user", "add", "bob", "--root", str(root)).stdout.strip()
        assert second != first
        assert me(server.url, second).json()["id"] == "alice"
        assert me(server.url, first).json()["id"] == "alice"
        assert me(server.url, bob).json()["id"] == "bob"
        # the token lives 3 s: long enough to be used once even on a busy machine
        short = nrp("user", "token", "bob", "--root", str(root), "--ttl", "3").stdout.strip()
        assert me(server.url, short).status_code == 200
        wait_until(lambda: me(server.url, short).status_code == 401, interval=0.2, message="the expiry")
        expired = me(server.url, short)  # expired for good
        assert expired.status_code == 401
        assert expired.json()["message"] == "Authentication required"
    finally:
        server.stop()
    # tokens are stored only as hashes
    assert first.encode() not in (root / ".nrp_storage.sqlite3").read_bytes()


def test_user_command_errors(tmp_path: Path) -> None:
    root = tmp_path / "root"
    nrp("user", "add", "alice", "--root", str(root))
    again = nrp("user", "add", "alice", "--root", str(root), check=False)
    assert again.returncode != 0 and "exists" in again.stderr
    unknown = nrp("user", "token", "nobody", "--root", str(root), check=False)
    assert unknown.returncode != 0 and "nobody" in unknown.stderr


def test_storage_root_from_environment(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = nrp("user", "add", "carol", env={"NRP_DATA_DIR": str(data)}).stdout.strip()
    assert (data / "storage" / ".nrp_storage.sqlite3").is_file()
    assert token


def test_port_zero_and_busy_port(tmp_path: Path) -> None:
    """``--port 0`` picks a free port (printed on the Listening line); a busy port is an error."""
    server = start_storage(tmp_path / "root")
    try:
        match = LISTENING.search(server.text())
        assert match and int(match.group("port")) == server.port != 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass
        import subprocess

        busy = subprocess.run(
            [*NRP, "storage", "--root", str(tmp_path / "other"), "--port", str(server.port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert busy.returncode != 0
        assert "--port" in busy.stderr and "NRP_STORAGE_PORT" in busy.stderr
    finally:
        server.stop()


def test_experiments_commands(tmp_path: Path) -> None:
    root = tmp_path / "root"
    token = nrp("user", "add", "alice", "--root", str(root)).stdout.strip()
    source = tmp_path / "myexp"
    (source / "sub" / "empty").mkdir(parents=True)
    (source / "simulation_config.json").write_text('{"SimulationName": "Mine"}')
    (source / "sub" / "data.bin").write_bytes(bytes(range(256)) * 4)
    server = start_storage(root)
    try:
        env = {"NRP_STORAGE_URL": server.url, "NRP_TOKEN": token}
        uploaded = nrp("experiments", "upload", str(source), env=env)
        assert uploaded.stdout.strip() == "myexp"
        listed = nrp("experiments", "list", env=env).stdout
        assert "myexp" in listed and "Mine" in listed
        # URL and token from $NRP_DATA_DIR/nrp-up.env when neither option nor variable is set
        data = tmp_path / "data"
        data.mkdir()
        (data / "nrp-up.env").write_text(
            f"NRP_BACKEND_URL=http://x\nNRP_STORAGE_URL={server.url}\nNRP_TOKEN={token}\n"
        )
        dest = tmp_path / "copy"
        nrp("experiments", "download", "myexp", str(dest), env={"NRP_DATA_DIR": str(data), "NRP_TOKEN": ""})
        assert (dest / "sub" / "data.bin").read_bytes() == bytes(range(256)) * 4
        assert (dest / "sub" / "empty").is_dir()
        bad = nrp("experiments", "--token", "wrong", "list", env={"NRP_STORAGE_URL": server.url}, check=False)
        assert bad.returncode != 0 and "401" in bad.stderr
    finally:
        server.stop()


def test_main_module_lists_storage_commands() -> None:
    import subprocess

    result = subprocess.run([*NRP, "--help"], capture_output=True, text=True, timeout=60)
    for command in ("storage", "user", "experiments"):
        assert command in result.stdout
    assert sys.executable
