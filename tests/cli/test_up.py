"""``nrp up`` as a user runs it: the whole system from one command, then Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

NRP = [sys.executable, "-m", "nrp_cli"]
HEADINGS = ("REST API: ", "API docs: ", "Storage: ", "MQTT broker: ", "Token: ")


class UpProcess:
    """``nrp up`` running in the background, its output collected line by line."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NRP_")}
        env.update({"NRP_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", "NRP_STOP_GRACE": "5"})
        self.proc = subprocess.Popen(
            [*NRP, "up", "--port", "0", "--storage-port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("Press Ctrl-C to stop."):
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 90) -> dict[str, str]:
        assert self._ready.wait(timeout), "nrp up never became ready:\n" + "\n".join(self.lines)
        assert self.proc.poll() is None, "nrp up exited:\n" + "\n".join(self.lines)
        found = {}
        for heading in HEADINGS:
            matching = [line for line in self.lines if line.startswith(heading)]
            assert matching, f"missing line {heading!r}:\n" + "\n".join(self.lines)
            found[heading.rstrip(": ")] = matching[0][len(heading) :]
        return found

    def children(self) -> list[int]:
        pids = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            pids += [int(p) for p in (task / "children").read_text().split()]
        return pids

    def interrupt(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpProcess]:
    process = UpProcess(tmp_path / "data", "--verbose")
    yield process
    process.kill()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_runs_a_simulation_and_stops_in_order(up: UpProcess, tmp_path: Path) -> None:
    info = up.wait_ready()
    env_file = tmp_path / "data" / "nrp-up.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert values["NRP_BACKEND_URL"] == info["REST API"]
    assert values["NRP_STORAGE_URL"] == info["Storage"]
    assert values["NRP_TOKEN"] == info["Token"]
    assert info["API docs"] == info["REST API"] + "/docs"
    assert info["MQTT broker"].endswith(("(embedded)", "(external)"))
    children = up.children()
    assert len(children) == 4, "broker, storage, REST server and gateway should run as children"

    # The CLI finds everything through nrp-up.env, as the README says.
    cli_env = {**os.environ, "NRP_DATA_DIR": str(tmp_path / "data")}
    for key in ("NRP_BACKEND_URL", "NRP_STORAGE_URL", "NRP_TOKEN"):
        cli_env.pop(key, None)
    listing = subprocess.run([*NRP, "experiments", "list"], capture_output=True, text=True, env=cli_env)
    assert listing.returncode == 0 and "tf_exchange" in listing.stdout, listing.stderr
    launched = subprocess.run(
        [*NRP, "sim", "launch", "tf_exchange"], capture_output=True, text=True, env=cli_env, timeout=60
    )
    assert launched.returncode == 0, launched.stderr
    sim_id = json.loads(launched.stdout)["simulationID"]
    headers = {"Authorization": f"Bearer {info['Token']}"}
    url = f"{info['REST API']}/simulation/{sim_id}"
    deadline = time.monotonic() + 30
    while not requests.get(url, headers=headers, timeout=10).json()["ready"]:
        assert time.monotonic() < deadline, "simulation never became ready"
        time.sleep(0.1)
    started = subprocess.run([*NRP, "sim", "start", str(sim_id)], capture_output=True, text=True, env=cli_env)
    assert started.returncode == 0, started.stderr
    while requests.get(url, headers=headers, timeout=10).json()["state"] != "completed":
        assert time.monotonic() < deadline, "simulation never completed"
        time.sleep(0.1)

    # Ctrl-C stops the gateway, the REST server (which stops the simulation and uploads its logs),
    # then storage, broker.
    assert up.interrupt() == 0, "\n".join(up.lines)
    stops = [line for line in up.lines if line.startswith("Stopped ")]
    assert stops == ["Stopped gateway", "Stopped backend", "Stopped storage", "Stopped broker"]
    assert not [pid for pid in children if _alive(pid)]
    storage_root = tmp_path / "data" / "storage" / "tf_exchange"
    assert [p.name for p in storage_root.glob(f"*_simulation_{sim_id}.log.zip")]


def test_busy_rest_port_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("NRP_")}
        env["NRP_DATA_DIR"] = str(tmp_path)
        result = subprocess.run(
            [*NRP, "up", "--port", str(port), "--storage-port", "0"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert result.returncode != 0
    assert "--port" in result.stderr and "NRP_BACKEND_PORT" in result.stderr


def test_busy_1883_moves_the_embedded_broker(tmp_path: Path) -> None:
    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", 1883))
            holder.listen()
        except OSError:
            pass  # already busy: exactly the situation under test
        process = UpProcess(tmp_path / "data")
        try:
            info = process.wait_ready()
            assert any(line.startswith("Port 1883 is busy;") for line in process.lines)
            assert not info["MQTT broker"].startswith("127.0.0.1:1883 ")
            assert process.interrupt() == 0
        finally:
            process.kill()
    finally:
        holder.close()


def test_killed_up_leaves_no_server_behind(up: UpProcess) -> None:
    up.wait_ready()
    children = up.children()
    assert len(children) == 4
    up.proc.kill()
    up.proc.wait(10)
    deadline = time.monotonic() + 15
    while [pid for pid in children if _alive(pid)]:
        assert time.monotonic() < deadline, "servers outlived a killed nrp up"
        time.sleep(0.1)
