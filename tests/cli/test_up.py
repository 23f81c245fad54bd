"""``nrp up`` as a user runs it: the whole system from one command, then Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import shutil
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

from tests.helpers.waiting import HANG, wait_until

NRP = [sys.executable, "-m", "nrp_cli"]
HEADINGS = ("REST API: ", "API docs: ", "Storage: ", "MQTT broker: ", "Token: ")


class UpProcess:
    """``nrp up`` running in the background, its output collected line by line.

    The embedded broker takes a free port (``--broker-port 0``) unless ``args`` say otherwise.
    """

    def __init__(self, data_dir: Path, *args: str, path: str | None = None, own_group: bool = False) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NRP_")}
        env.update({"NRP_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", "NRP_STOP_GRACE": "5"})
        if path is not None:
            env["PATH"] = path
        self.proc = subprocess.Popen(
            [*NRP, "up", "--port", "0", "--storage-port", "0", "--broker-port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=own_group,  # a process group as a terminal's foreground job has
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._changed = threading.Condition()
        self._ended = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
            if line.startswith("Press Ctrl-C to stop."):
                self._ready.set()
        with self._changed:
            self._ended = True
            self._changed.notify_all()
        self._ready.set()

    def wait_line(self, pattern: str, timeout: float = 60) -> str:
        """Wait for a line matching the regular expression ``pattern`` (searched) and return it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                assert left > 0 and not self._ended, f"no line {pattern!r} in:\n" + "\n".join(self.lines)
                self._changed.wait(left)

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

    def interrupt(self, timeout: float = 2 * HANG) -> int:
        """Ctrl-C: ``nrp up`` stops every server in order (the REST server stops and uploads first)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("nrp up did not stop after Ctrl-C:\n" + "\n".join(self.lines)) from None

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
    sandboxed = "sandboxed (bwrap)" if shutil.which("bwrap") else "NOT sandboxed"
    assert any(line.startswith(f"Simulations: {sandboxed}") for line in up.lines), "\n".join(up.lines)
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
    wait_until(lambda: requests.get(url, headers=headers, timeout=10).json()["ready"], message="ready")
    started = subprocess.run([*NRP, "sim", "start", str(sim_id)], capture_output=True, text=True, env=cli_env)
    assert started.returncode == 0, started.stderr
    wait_until(
        lambda: requests.get(url, headers=headers, timeout=10).json()["state"] == "completed",
        message="the simulation completed",
    )

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


def test_busy_broker_port_moves_the_embedded_broker(tmp_path: Path) -> None:
    """As when 1883 (the default ``--broker-port``) is taken, here by a port this test holds."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        process = UpProcess(tmp_path / "data", "--broker-port", str(busy))
        try:
            info = process.wait_ready()
            moved = f"Port {busy} is busy; the embedded MQTT broker uses port "
            assert any(line.startswith(moved) for line in process.lines), "\n".join(process.lines)
            assert info["MQTT broker"].startswith("127.0.0.1:")
            assert not info["MQTT broker"].startswith(f"127.0.0.1:{busy} ")
            assert process.interrupt() == 0
        finally:
            process.kill()


def test_the_embedded_broker_port_defaults_to_1883() -> None:
    result = subprocess.run([*NRP, "up", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert re.search(r"--broker-port INTEGER\s.*\[default: 1883\]", " ".join(result.stdout.split()))


def test_killed_up_leaves_no_server_behind(up: UpProcess) -> None:
    up.wait_ready()
    children = up.children()
    assert len(children) == 4
    up.proc.kill()
    up.proc.wait(10)
    wait_until(
        lambda: not [pid for pid in children if _alive(pid)], message="servers gone after nrp up was killed"
    )


def test_the_path_hint_names_activate_unless_this_nrp_is_on_the_path() -> None:
    from nrp_cli.up_commands import path_hint

    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "nrp").is_file() or not (bin_dir / "activate").is_file():
        pytest.skip("the tests do not run from a virtual environment with nrp installed")
    assert path_hint({"PATH": f"{os.defpath}:{bin_dir}"}) is None
    hint = path_hint({"PATH": os.defpath})
    assert hint is not None and "bin/activate` puts nrp on the PATH" in hint


ENDLESS_SCRIPT = """
import time

while True:
    nrp.run_loop(1)
    time.sleep(0.02)
"""


def _endless_experiment(folder: Path) -> Path:
    """tf_exchange running until stopped (``main_script.py``), plus ``boom.py``, which raises at once."""
    import nrp_experiments

    source = next(p for p in nrp_experiments.bundled_experiments() if p.name == "tf_exchange")
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.log*"))
    config = json.loads((folder / "simulation_config.json").read_text())
    config["SimulationTimeout"] = 1_000_000
    (folder / "simulation_config.json").write_text(json.dumps(config))
    (folder / "main_script.py").write_text(ENDLESS_SCRIPT)
    (folder / "boom.py").write_text('raise RuntimeError("boom from the main script")\n')
    return folder


def _event(sim_id: int, text: str) -> str:
    """The pattern of an event line of ``nrp up``: ``HH:MM:SSZ simulation <id> <text>`` (UTC)."""
    return rf"^\d\d:\d\d:\d\dZ simulation {sim_id} {text}"


def test_up_prints_one_line_per_simulation_event(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = UpProcess(data, path=os.defpath)  # no .venv/bin on the PATH, as after `make run`
    try:
        info = up.wait_ready()
        hint = [line for line in up.lines if line.startswith("In another terminal")]
        assert hint and "bin/activate` puts nrp on the PATH" in hint[0], "\n".join(up.lines)

        cli_env = {k: v for k, v in os.environ.items() if not k.startswith("NRP_")}
        cli_env["NRP_DATA_DIR"] = str(data)
        uploaded = subprocess.run(
            [*NRP, "experiments", "upload", str(_endless_experiment(tmp_path / "endless"))],
            capture_output=True,
            text=True,
            env=cli_env,
            timeout=60,
        )
        assert uploaded.returncode == 0, uploaded.stderr
        rest = requests.Session()
        rest.headers["Authorization"] = f"Bearer {info['Token']}"
        api = info["REST API"]

        def launch(**body: str) -> int:
            response = rest.post(f"{api}/simulation", json={"experimentID": "endless", **body}, timeout=60)
            assert response.status_code == 201, response.text
            return int(response.json()["simulationID"])

        def request_state(sim_id: int, state: str) -> None:
            response = rest.put(f"{api}/simulation/{sim_id}/state", json={"state": state}, timeout=60)
            assert response.status_code == 200, response.text

        sim = launch()
        up.wait_line(_event(sim, "launched: experiment endless, owner nrpuser \\(paused\\)$"))
        request_state(sim, "started")
        up.wait_line(_event(sim, "started$"))
        request_state(sim, "paused")
        up.wait_line(_event(sim, "paused$"))
        request_state(sim, "stopped")
        uploaded_line = up.wait_line(_event(sim, "logs uploaded to storage: endless/.*\\.log\\.zip$"))
        zip_name = uploaded_line.rsplit("/", 1)[1]
        assert (data / "storage" / "endless" / zip_name).is_file()
        up.wait_line(_event(sim, "stopped$"))

        raising = launch(mainScript="boom.py")
        request_state(raising, "started")
        up.wait_line(_event(raising, "error \\(Runtime\\): boom from the main script$"))
        up.wait_line(_event(raising, "completed$"))  # a script error ends the script, not the simulation

        failing = launch(mainScript="missing.py")
        up.wait_line(_event(failing, "failed: Error loading main script.*missing\\.py"))

        # Storage dies while a simulation runs and its port stays taken (a bound socket that never
        # listens), so nrp up cannot restart it yet: a stop spools the logs and says where.
        last = launch()
        up.wait_line(_event(last, "launched"))
        storage = _server_pid(up, "storage")
        storage_port = _listening_port(storage)
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            os.kill(storage, signal.SIGKILL)
            deadline = time.monotonic() + 10  # its socket closes once the process has gone
            while True:
                try:
                    squatter.bind(("127.0.0.1", storage_port))
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the killed storage server's port stayed busy"
                    time.sleep(0.01)  # sleep-ok: poll interval until the killed server released its port
            up.wait_line(r"Z storage stopped unexpectedly \(killed by SIGKILL\)")
            request_state(last, "stopped")
            spool = data / "backend" / "spool"
            spooled = up.wait_line(_event(last, f"logs spooled to {re.escape(str(spool))}/.*\\.log\\.zip "))
            assert (spool / spooled.split(f"{spool}/", 1)[1].split(" ", 1)[0]).is_file()
            up.wait_line(_event(last, "stopped$"))
        up.wait_line(r"Z storage restarted on ", timeout=90)  # once the port is free again
        assert up.interrupt() == 0, "\n".join(up.lines)
    finally:
        up.kill()
    events = [line for line in up.lines if re.match(r"^\d\d:\d\d:\d\dZ simulation ", line)]
    assert events and all(line.count("\n") == 0 and len(line) < 400 for line in events)
    assert not [line for line in up.lines if " [INFO] " in line], "without --verbose, no raw log lines"


ROOT = Path(__file__).resolve().parents[2]


def readme_tour() -> list[str]:
    """The commands of the README's second-terminal tour (the first code block after that sentence)."""
    text = (ROOT / "README.md").read_text()
    after = text.split("In a second terminal", 1)[1]
    block = after.split("```\n", 2)[1]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_tour_works_verbatim(tmp_path: Path) -> None:
    """Every tour line, run as written in one shell in the clone, after `make run` (here: nrp up)."""
    commands = readme_tour()
    assert commands[0] == ". .venv/bin/activate"
    venv_bin = Path(sys.executable).parent
    if venv_bin != ROOT / ".venv" / "bin":  # tests run from another environment: activate that one
        commands[0] = f". {venv_bin / 'activate'}"
    data = tmp_path / "data"
    up = UpProcess(data)
    try:
        up.wait_ready()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NRP_", "VIRTUAL_ENV"))}
        env.update({"NRP_DATA_DIR": str(data), "PATH": os.defpath})
        script = "set -e\n" + "".join(f"echo '+ {c}'\n{c}\n" for c in commands)
        result = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "tf_exchange" in result.stdout
        assert list((data / "storage" / "tf_exchange").glob("*_simulation_0.log.zip"))
        up.wait_line(_event(0, "stopped$"))
    finally:
        up.kill()


def _listening_port(pid: int) -> int:
    """The TCP port process ``pid`` listens on (under ``nrp up`` storage listens on a private port,
    behind the gateway's public one)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                return int(fields[1].rsplit(":", 1)[1], 16)
    raise AssertionError(f"process {pid} listens on no TCP port")


def _server_pid(up: UpProcess, word: str) -> int:
    """The child of ``nrp up`` whose command line holds ``word`` (``storage``, ``backend``, ...)."""
    for pid in up.children():
        if word in Path(f"/proc/{pid}/cmdline").read_text().split("\0"):
            return pid
    raise AssertionError(f"no {word} child of nrp up")


def test_a_killed_storage_server_is_restarted_and_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = UpProcess(data)
    try:
        up.wait_ready()
        storage = _server_pid(up, "storage")
        private = f"http://127.0.0.1:{_listening_port(storage)}"  # behind the gateway's public port
        os.kill(storage, signal.SIGKILL)
        up.wait_line(r"^\d\d:\d\d:\d\dZ storage stopped unexpectedly \(killed by SIGKILL\); restarting it in")
        up.wait_line(rf"^\d\d:\d\d:\d\dZ storage restarted on {re.escape(private)}$")
        assert up.proc.poll() is None, "\n".join(up.lines)
        assert _server_pid(up, "storage") != storage
        cli_env = {**os.environ, "NRP_DATA_DIR": str(data)}
        for key in ("NRP_BACKEND_URL", "NRP_STORAGE_URL", "NRP_TOKEN"):
            cli_env.pop(key, None)
        listing = subprocess.run([*NRP, "experiments", "list"], capture_output=True, text=True, env=cli_env)
        assert listing.returncode == 0 and "tf_exchange" in listing.stdout, listing.stderr
        assert up.interrupt() == 0, "\n".join(up.lines)
    finally:
        up.kill()


def test_a_killed_broker_and_rest_server_come_back_and_simulations_run(tmp_path: Path) -> None:
    up = UpProcess(tmp_path / "data")
    try:
        info = up.wait_ready()
        for name, word in (("broker", "hbp_nrp_commons.broker"), ("backend", "backend")):
            os.kill(_server_pid(up, word), signal.SIGKILL)
            up.wait_line(rf"Z {name} stopped unexpectedly \(killed by SIGKILL\); restarting it in")
            up.wait_line(rf"Z {name} restarted on ")
        assert up.proc.poll() is None, "\n".join(up.lines)
        # The restarted REST server reaches the restarted broker (same address, same secret).
        headers = {"Authorization": f"Bearer {info['Token']}"}
        api = info["REST API"]
        response = requests.post(
            f"{api}/simulation", json={"experimentID": "tf_exchange"}, headers=headers, timeout=60
        )
        assert response.status_code == 201, response.text
        sim_id = response.json()["simulationID"]
        deadline = time.monotonic() + 60
        while not requests.get(f"{api}/simulation/{sim_id}", headers=headers, timeout=10).json()["ready"]:
            assert time.monotonic() < deadline, "simulation never became ready"
            time.sleep(0.1)  # sleep-ok: poll interval of a wait for readiness
        assert up.interrupt() == 0, "\n".join(up.lines)
        up.wait_line(_event(sim_id, "logs uploaded to storage"), timeout=5)
    finally:
        up.kill()


def test_ctrl_c_to_the_terminal_group_stops_in_order_and_uploads_the_logs(tmp_path: Path) -> None:
    """SIGINT to the whole foreground process group, as a terminal's Ctrl-C: storage must outlive the
    REST server, which uploads the running simulation's logs instead of spooling them."""
    data = tmp_path / "data"
    up = UpProcess(data, own_group=True)
    try:
        info = up.wait_ready()
        headers = {"Authorization": f"Bearer {info['Token']}"}
        response = requests.post(
            f"{info['REST API']}/simulation",
            json={"experimentID": "tf_exchange"},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 201, response.text
        sim_id = response.json()["simulationID"]
        up.wait_line(_event(sim_id, "launched"))
        deadline = time.monotonic() + 60
        url = f"{info['REST API']}/simulation/{sim_id}"
        while not requests.get(url, headers=headers, timeout=10).json()["ready"]:
            assert time.monotonic() < deadline, "simulation never became ready"
            time.sleep(0.1)  # sleep-ok: poll interval of a wait for readiness
        os.killpg(up.proc.pid, signal.SIGINT)
        assert up.proc.wait(120) == 0, "\n".join(up.lines)
        up.wait_line(_event(sim_id, "logs uploaded to storage"), timeout=5)
        assert not [line for line in up.lines if "spooled" in line], "\n".join(up.lines)
        assert list((data / "storage" / "tf_exchange").glob(f"*_simulation_{sim_id}.log.zip"))
    finally:
        up.kill()
