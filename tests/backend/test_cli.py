"""``nrp backend`` start-up errors and the ``nrp sim`` REST client."""

from __future__ import annotations

import json
import os
import socket
import subprocess

from tests.backend.conftest import NRP, BackendFactory, Storage


def run_nrp(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NRP, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=60
    )


def test_busy_port_names_the_option_and_variable(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        result = run_nrp("backend", "--port", str(port), env={"NRP_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "--port" in result.stderr and "NRP_BACKEND_PORT" in result.stderr
    assert "Listening on" not in result.stdout


def test_sim_commands(start_backend: BackendFactory, storage: Storage, tmp_path) -> None:
    backend = start_backend()
    env = {"NRP_BACKEND_URL": backend.url, "NRP_TOKEN": storage.alice, "NRP_DATA_DIR": str(tmp_path)}
    launched = run_nrp("sim", "launch", "my_cloned_experiment", env=env)
    assert launched.returncode == 0, launched.stderr
    sim = json.loads(launched.stdout)
    assert sim["state"] == "paused" and sim["simulationID"] == 0
    backend.rest.wait_for(0, lambda s: s["ready"])
    # URL and token from nrp-up.env when neither option nor environment gives them.
    (tmp_path / "nrp-up.env").write_text(f"NRP_BACKEND_URL={backend.url}\nNRP_TOKEN={storage.alice}\n")
    file_env = {"NRP_BACKEND_URL": "", "NRP_TOKEN": "", "NRP_DATA_DIR": str(tmp_path)}
    started = run_nrp("sim", "start", "0", env=file_env)
    assert json.loads(started.stdout)["state"] == "started", started.stderr
    paused = run_nrp("sim", "--url", backend.url, "--token", storage.alice, "pause", "0", env=file_env)
    assert json.loads(paused.stdout)["state"] == "paused"
    status = run_nrp("sim", "status", "0", env=env)
    assert json.loads(status.stdout)["experimentID"] == "my_cloned_experiment"
    listing = run_nrp("sim", "list", env=env)
    assert "my_cloned_experiment" in listing.stdout and "paused" in listing.stdout
    assert json.loads(run_nrp("sim", "stop", "0", env=env).stdout)["state"] == "stopped"
    again = run_nrp("sim", "stop", "0", env=env)
    assert again.returncode == 0 and "already stopped" in again.stderr
    anonymous = run_nrp("sim", "list", env={**env, "NRP_TOKEN": "wrong"})
    assert anonymous.returncode != 0 and "401" in anonymous.stderr
