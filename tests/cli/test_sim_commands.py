"""``nrp sim`` as a user runs it: real ``nrp`` processes against a real REST server, broker and storage."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from pathlib import Path

from tests.backend.conftest import NRP, Backend, BackendFactory, Storage, make_experiment
from tests.helpers.brokers import BrokerProcess
from tests.helpers.waiting import wait_until


def cli_env(backend: Backend, storage: Storage, broker: BrokerProcess, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "NRP_BACKEND_URL": backend.url,
        "NRP_TOKEN": storage.alice,
        "NRP_STORAGE_URL": storage.url,
        "NRP_MQTT_BROKER_ADDRESS": broker.address,
        "NRP_DATA_DIR": str(data_dir),
    }


def nrp(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NRP, *args], capture_output=True, text=True, env=env, timeout=timeout)


class Background:
    """An ``nrp`` command running in the background, its output collected line by line."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [*NRP, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, fragment: str, timeout: float = 30) -> None:
        def seen() -> bool:
            assert self.proc.poll() is None or self._thread.is_alive(), f"exited:\n{self.text}"
            return any(fragment in line for line in self.lines)

        wait_until(seen, timeout=timeout, message=f"a line with {fragment!r}")

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self._thread.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def test_launch_wait_list_and_idempotent_stop(
    start_backend: BackendFactory, storage: Storage, broker: BrokerProcess, tmp_path: Path
) -> None:
    backend = start_backend()
    env = cli_env(backend, storage, broker, tmp_path)
    launched = nrp(env, "sim", "launch", "my_cloned_experiment")
    assert launched.returncode == 0, launched.stderr
    sim_id = json.loads(launched.stdout)["simulationID"]
    # launch explains "ready" and names the next commands
    assert '"ready": false means' in " ".join(launched.stderr.split())
    assert f"nrp sim wait {sim_id} --state paused" in launched.stderr
    assert f"nrp sim start {sim_id}" in launched.stderr

    waited = nrp(env, "sim", "wait", str(sim_id), "--state", "paused", "--timeout", "60")
    assert waited.returncode == 0, waited.stderr
    assert backend.rest.get(f"/simulation/{sim_id}").json()["ready"] is True

    timed_out = nrp(env, "sim", "wait", str(sim_id), "--state", "completed", "--timeout", "0.5")
    assert timed_out.returncode == 3, timed_out.stderr
    assert "Timed out" in timed_out.stderr and "paused" in timed_out.stderr

    second = json.loads(nrp(env, "sim", "launch", "slow_stop").stdout)["simulationID"]
    listing = nrp(env, "sim", "list")
    assert listing.returncode == 0, listing.stderr
    rows = [line for line in listing.stdout.splitlines() if "my_cloned" in line or "slow_stop" in line]
    assert len(rows) == 2, listing.stdout
    limited = nrp(env, "sim", "list", "--limit", "1").stdout
    assert "slow_stop" in limited and "my_cloned_experiment" not in limited

    stopped = nrp(env, "sim", "stop", str(sim_id))
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["state"] == "stopped"
    only_stopped = nrp(env, "sim", "list", "--state", "stopped").stdout
    assert "my_cloned_experiment" in only_stopped and "slow_stop" not in only_stopped
    both = nrp(env, "sim", "list", "--state", "stopped", "--state", "paused").stdout
    assert "my_cloned_experiment" in both and "slow_stop" in both
    assert "No simulations" in nrp(env, "sim", "list", "--state", "failed").stderr

    again = nrp(env, "sim", "stop", str(sim_id))
    assert again.returncode == 0, again.stderr
    assert "already stopped" in again.stderr
    assert json.loads(again.stdout)["state"] == "stopped"

    unreachable = nrp(env, "sim", "wait", str(sim_id), "--state", "started", "--timeout", "30")
    assert unreachable.returncode == 1
    assert "stopped" in unreachable.stderr and "can no longer become started" in unreachable.stderr
    unknown = nrp(env, "sim", "stop", "999")
    assert unknown.returncode == 1 and "404" in unknown.stderr
    nrp(env, "sim", "stop", str(second))


def test_watch_follows_a_simulation_to_completion(
    start_backend: BackendFactory, storage: Storage, broker: BrokerProcess, tmp_path: Path
) -> None:
    backend = start_backend()
    env = cli_env(backend, storage, broker, tmp_path)
    sim_id = backend.rest.launch("completes")["simulationID"]
    backend.rest.wait_for(sim_id, lambda s: s["ready"])
    watch = Background(env, "sim", "watch", str(sim_id))
    try:
        watch.wait_for_line("state: paused")
        assert backend.rest.set_state(sim_id, "started").status_code == 200
        assert watch.finish() == 0, watch.text
    finally:
        watch.kill()
    text = watch.text
    assert "state: started" in text and "state: completed" in text, text
    assert "lifecycle: paused -> started" in text, text
    assert "0.20 / 1.00 s simulated" in text, text  # the fake's simulation time against its timeout
    assert f"nrp sim stop {sim_id}" in text
    backend.rest.set_state(sim_id, "stopped")
    ended = nrp(env, "sim", "watch", str(sim_id))
    assert ended.returncode == 0 and f"Simulation {sim_id} stopped." in ended.stdout


def test_watch_shows_runtime_errors_and_its_exit_code_says_so(
    start_backend: BackendFactory, storage: Storage, broker: BrokerProcess, tmp_path: Path
) -> None:
    backend = start_backend()
    env = cli_env(backend, storage, broker, tmp_path)
    sim_id = backend.rest.launch("script_error")["simulationID"]
    backend.rest.wait_for(sim_id, lambda s: s["ready"])
    watch = Background(env, "sim", "watch", str(sim_id))
    try:
        watch.wait_for_line("state: paused")
        backend.rest.set_state(sim_id, "started")
        watch.wait_for_line("Runtime error: boom")
        assert "(main_script.py:3: raise RuntimeError('boom'))" in watch.text
        assert backend.rest.set_state(sim_id, "stopped").status_code == 200
        assert watch.finish() == 1, watch.text  # it ended, but its script reported an error
    finally:
        watch.kill()
    assert f"Simulation {sim_id} stopped with an error." in watch.text
    again = nrp(env, "sim", "watch", str(sim_id))  # an ended simulation: the same answer at once
    assert again.returncode == 1 and "stopped with an error" in again.stdout


def test_watch_exit_code_says_the_simulation_failed(
    start_backend: BackendFactory, storage: Storage, broker: BrokerProcess, tmp_path: Path
) -> None:
    backend = start_backend()
    env = cli_env(backend, storage, broker, tmp_path)
    sim_id = backend.rest.launch("exit_one")["simulationID"]  # its simserver exits with 1 on its own
    watched = nrp(env, "sim", "watch", str(sim_id))
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert "failed" in watched.stdout and "exited with code 1" in watched.stdout
    waited = nrp(env, "sim", "wait", str(sim_id), "--state", "stopped")
    assert waited.returncode == 1 and "failed" in waited.stderr


def test_watch_names_the_broker_when_it_is_unreachable(
    start_backend: BackendFactory, storage: Storage, broker: BrokerProcess, tmp_path: Path
) -> None:
    backend = start_backend()
    env = cli_env(backend, storage, broker, tmp_path)
    sim_id = backend.rest.launch("my_cloned_experiment")["simulationID"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        watched = nrp(env, "sim", "watch", str(sim_id), "--broker", address)
    assert watched.returncode == 1
    assert address in watched.stderr and "--broker" in watched.stderr
    backend.rest.set_state(sim_id, "stopped")


def test_logs_live_then_from_the_uploaded_zip(
    start_backend: BackendFactory, storage: Storage, broker: BrokerProcess, tmp_path: Path
) -> None:
    backend = start_backend()
    env = cli_env(backend, storage, broker, tmp_path)
    sim_id = backend.rest.launch("my_cloned_experiment")["simulationID"]
    backend.rest.wait_for(sim_id, lambda s: s["ready"])
    live = nrp(env, "sim", "logs", str(sim_id))
    assert live.returncode == 0, live.stderr
    assert "Live logs" in live.stderr
    # the console log (the simserver's output) comes first, then the script log
    console_at = live.stdout.index(f"simulation_{sim_id}.log")
    assert live.stdout.index(f"main_script_{sim_id}.log") > console_at
    args_line = next(line for line in live.stdout.splitlines() if line.startswith("ARGS "))
    assert "ENVIRONMENT " in live.stdout

    assert backend.rest.set_state(sim_id, "stopped").status_code == 200
    archived = nrp(env, "sim", "logs", str(sim_id))
    assert archived.returncode == 0, archived.stderr
    assert f"_simulation_{sim_id}.log.zip" in archived.stderr
    assert args_line in archived.stdout.splitlines()  # this very run's console log (its own sim_dir)
    assert f"Writing logs to 'main_script_{sim_id}.log'" in archived.stdout

    target = tmp_path / "extracted"
    extracted = nrp(env, "sim", "logs", str(sim_id), "--extract", str(target))
    assert extracted.returncode == 0, extracted.stderr
    names = sorted(p.name for p in target.iterdir())
    assert names == [f"main_script_{sim_id}.log", f"simulation_{sim_id}.log"]
    assert args_line in (target / f"simulation_{sim_id}.log").read_text().splitlines()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
        no_storage = nrp({**env, "NRP_STORAGE_URL": dead}, "sim", "logs", str(sim_id))
    assert no_storage.returncode == 1 and dead in no_storage.stderr


def test_logs_follow_until_the_simulation_ends(
    start_backend: BackendFactory, storage: Storage, broker: BrokerProcess, tmp_path: Path
) -> None:
    backend = start_backend()
    env = cli_env(backend, storage, broker, tmp_path)
    sim_id = backend.rest.launch("my_cloned_experiment")["simulationID"]
    backend.rest.wait_for(sim_id, lambda s: s["ready"])
    follow = Background(env, "sim", "logs", str(sim_id), "--follow")
    try:
        follow.wait_for_line("ENVIRONMENT ")
        backend.rest.set_state(sim_id, "started")  # the stand-in prints "STATE started" on its console
        follow.wait_for_line("STATE started")
        assert backend.rest.set_state(sim_id, "stopped").status_code == 200
        assert follow.finish() == 0, follow.text  # it ends with the simulation
    finally:
        follow.kill()
    assert f"==> simulation_{sim_id}.log <==" in follow.lines and "has ended" in follow.text
    assert follow.text.count("ENVIRONMENT ") == 1  # what was shown is not shown again


def test_connection_options_on_the_group_or_the_command(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path
) -> None:
    backend = start_backend()
    env = {**os.environ, "NRP_BACKEND_URL": "", "NRP_TOKEN": "", "NRP_DATA_DIR": str(tmp_path)}
    after = nrp(env, "sim", "list", "--url", backend.url, "--token", storage.alice)
    assert after.returncode == 0, after.stderr
    before = nrp(env, "sim", "--url", backend.url, "--token", storage.alice, "list")
    assert before.returncode == 0, before.stderr
    # the command's value wins over the group's
    wins = nrp(env, "sim", "--url", backend.url, "--token", storage.alice, "list", "--token", "wrong")
    assert wins.returncode == 1 and "401" in wins.stderr
    missing = nrp(env, "sim", "list")
    assert missing.returncode == 1 and "--url" in missing.stderr and "nrp up" in missing.stderr


def test_error_texts_are_shown_as_they_are(
    start_backend: BackendFactory, storage: Storage, broker: BrokerProcess, tmp_path: Path
) -> None:
    """Square brackets in an error (``[Errno 2]``, ``list[int]``) are text, not rich markup."""
    message = "bad value [Errno 2] for list[int] in [bold]x[/bold]"
    error = {"sim_id": "0", "msg": message, "error_type": "Runtime", "fileName": "main_script.py"}
    error.update(line_number=2, offset=-1, line_text="x = [1][2]")
    source = make_experiment(tmp_path / "brackets", {"runtime_error": error})
    storage.client().upload_experiment(storage.alice, f"brackets_{tmp_path.name}", source)
    backend = start_backend()
    env = cli_env(backend, storage, broker, tmp_path)
    sim_id = backend.rest.launch(f"brackets_{tmp_path.name}")["simulationID"]
    backend.rest.wait_for(sim_id, lambda s: s["ready"])
    backend.rest.set_state(sim_id, "started")
    backend.rest.wait_for(sim_id, lambda s: s["error"] is not None)
    expected = f"Runtime error: {message} (main_script.py:2: x = [1][2])"
    listing = nrp(env, "sim", "list")
    for fragment in ("[Errno 2]", "list[int]", "[bold]x[/bold]"):
        assert fragment in listing.stdout, listing.stdout
    backend.rest.set_state(sim_id, "stopped")
    ended = nrp(env, "sim", "watch", str(sim_id))
    assert ended.returncode == 1 and expected in ended.stdout, ended.stdout


def test_watch_from_launch_on(
    start_backend: BackendFactory, storage: Storage, broker: BrokerProcess, tmp_path: Path
) -> None:
    """``launch --start`` then ``watch``: it follows the simulation to its end."""
    backend = start_backend()
    env = cli_env(backend, storage, broker, tmp_path)
    launched = nrp(env, "sim", "launch", "completes", "--start")
    assert launched.returncode == 0, launched.stderr
    sim_id = json.loads(launched.stdout)["simulationID"]
    assert f"nrp sim watch {sim_id}" in launched.stderr
    watched = nrp(env, "sim", "watch", str(sim_id))
    assert watched.returncode == 0, watched.stdout
    states = [line.split("state: ")[1] for line in watched.stdout.splitlines() if " state: " in line]
    assert states[-1] == "completed", watched.stdout
    backend.rest.set_state(sim_id, "stopped")
