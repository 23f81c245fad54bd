"""The Simulation Server supervisor on real child processes: spawn, classification, termination."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from hbp_nrp_backend.simserver_process import (
    ProcessExit,
    SimulationServerProcess,
    child_environment,
    classify_exit,
    process_carries_id,
    simserver_command,
)
from tests.helpers.waiting import HANG, wait_until


def spawn(tmp_path: Path, code: str, sim_id: int = 3) -> tuple[SimulationServerProcess, list[ProcessExit]]:
    exits: list[ProcessExit] = []
    command = [sys.executable, "-c", code, "--id", str(sim_id)]
    process = SimulationServerProcess(
        command, tmp_path, sim_id, child_environment(os.environ, {"PYTHONUNBUFFERED": "1"}), exits.append
    )
    process.start()
    return process, exits


def _alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_command_line() -> None:
    command = simserver_command(Path("/tmp/d"), 4, "main_script.py", "simulation_config.json", verbose=True)
    assert command[0] == sys.executable
    assert command[1:] == [
        "-m",
        "hbp_nrp_simserver",
        "--dir",
        "/tmp/d",
        "--id",
        "4",
        "--script",
        "main_script.py",
        "--config",
        "simulation_config.json",
        "--verbose",
    ]


def test_environment_has_no_secrets() -> None:
    env = child_environment(
        {
            "PATH": "/bin",
            "NRP_SERVICE_TOKEN": "s",
            "NRP_MQTT_PASSWORD": "p",
            "NRP_TOKEN": "t",
            "AWS_SECRET": "x",
            "api_key": "k",
            "NRP_MQTT_PREFIX": "pfx",
        },
        {"EXTRA": "1"},
    )
    assert env == {"PATH": "/bin", "NRP_MQTT_PREFIX": "pfx", "EXTRA": "1"}


def test_classification_table() -> None:
    assert not classify_exit(0, requested=False)
    assert not classify_exit(-signal.SIGTERM, requested=True)
    assert not classify_exit(-signal.SIGKILL, requested=True)
    assert classify_exit(-signal.SIGTERM, requested=False)
    assert classify_exit(1, requested=False)
    assert classify_exit(7, requested=True)


@pytest.mark.parametrize("code", [1, 7])
def test_exit_code_is_a_failure(tmp_path: Path, code: int) -> None:
    process, exits = spawn(tmp_path, f"import sys; print('hello'); sys.exit({code})")
    assert process.wait(HANG)
    wait_until(lambda: exits, message="the exit handler")
    assert len(exits) == 1 and exits[0].failed and exits[0].returncode == code
    assert exits[0].error() == {
        "msg": f"Simulation Server exited with code {code}",
        "error_type": "Process",
        "exit_code": code,
    }
    assert (tmp_path / "simulation_3.log").read_text() == "hello\n"


def test_log_file_is_exclusive(tmp_path: Path) -> None:
    (tmp_path / "simulation_3.log").write_text("old")
    with pytest.raises(FileExistsError):
        spawn(tmp_path, "pass")


def test_own_sigterm_is_no_failure(tmp_path: Path) -> None:
    process, exits = spawn(tmp_path, "import time; print('up', flush=True); time.sleep(30)")
    # between fork and exec the child still shows the parent's command line: wait for the exec
    wait_until(lambda: process_carries_id(process.pid or 0, 3), message="the simserver's command line")
    assert not process_carries_id(process.pid or 0, 4)
    result = process.terminate(grace=HANG)
    # ended by the SIGTERM itself, not by the SIGKILL after the grace period
    assert result is not None and result.returncode == -signal.SIGTERM and not result.failed
    wait_until(lambda: exits, message="the exit handler")
    assert [e.failed for e in exits] == [False]


def test_sigkill_from_outside_is_a_failure(tmp_path: Path) -> None:
    process, exits = spawn(tmp_path, "import time; time.sleep(30)")
    os.kill(process.pid or 0, signal.SIGKILL)
    assert process.wait(HANG)
    wait_until(lambda: exits, message="the exit handler")
    assert exits[0].failed and exits[0].returncode == -signal.SIGKILL
    assert "SIGKILL" in exits[0].error()["msg"]


def test_stubborn_process_group_is_killed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    process, exits = spawn(tmp_path, code)
    log = tmp_path / "simulation_3.log"
    # the child's pid is printed once the SIGTERM handler is in place
    engine_pid = int(wait_until(lambda: log.read_text().strip(), message="the child's pid"))
    with caplog.at_level(logging.WARNING, logger="hbp_nrp_backend.simserver_process"):
        result = process.terminate(grace=0.5)
    # the SIGTERM was ignored: killed after the grace period
    assert "did not stop within 0.5 s; killing its process group" in caplog.text
    assert result is not None and result.returncode == -signal.SIGKILL and not result.failed
    # the engine is reparented and reaped by init once killed; a zombie may linger briefly
    wait_until(lambda: not _alive(engine_pid), message="the engine process to be killed")


def test_exit_handler_may_wait_for_the_terminating_thread(tmp_path: Path) -> None:
    """The monitor never blocks on a lock the terminating thread holds (no deadlock)."""
    lock = threading.Lock()
    seen: list[ProcessExit] = []

    def on_exit(exit: ProcessExit) -> None:
        threading.Thread(target=lambda: (lock.acquire(), seen.append(exit), lock.release())).start()

    process = SimulationServerProcess(
        [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path, 5, dict(os.environ), on_exit
    )
    process.start()
    with lock:
        result = process.terminate(grace=5)
    assert result is not None and not result.failed
    wait_until(lambda: seen, message="the exit handler's thread")
