"""``NRPCoreSim`` in a real subprocess: tf_exchange timelines, exit codes, signals, logs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.waiting import HANG, wait_until
from tests.nrp_core.loop_helpers import TF_EXCHANGE, write_experiment

REPO = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).parent / "NRPCoreSim"


def _command() -> list[str]:
    if CONSOLE_SCRIPT.exists():
        return [str(CONSOLE_SCRIPT)]
    return [sys.executable, "-m", "nrp_core.sim_main"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _sim(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_command(), *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def tf_exchange(tmp_path: Path) -> Path:
    experiment = tmp_path / "tf_exchange"
    shutil.copytree(TF_EXCHANGE, experiment)
    return experiment


def _expected_engine_lines(steps: int) -> tuple[list[str], list[str]]:
    engine_1 = [
        f"DataPack 1 data is {{'time': {k * 10_000_000}, 'timestep': 10000000}}" for k in range(1, steps + 1)
    ]
    engine_2 = ["Engine 2 received data is {'time': 0, 'timestep': 0}"] + [
        f"Engine 2 received data is {{'time': {k * 10_000_000}, 'timestep': 10000000}}"
        for k in range(1, steps)
    ]
    return engine_1, engine_2


def _check_timeline(stdout: str, steps: int) -> None:
    lines = stdout.splitlines()
    engine_1, engine_2 = _expected_engine_lines(steps)
    assert [line for line in lines if line.startswith("DataPack 1 data is")] == engine_1
    assert [line for line in lines if line.startswith("Engine 2 received data is")] == engine_2
    for text in (
        "Engine 1 is initializing. Registering datapack...",
        "Engine 2 is initializing. Registering datapack...",
        "Engine 1 is shutting down",
        "Engine 2 is shutting down",
    ):
        assert lines.count(text) == 1, text


def test_tf_exchange_runs_100_steps_with_one_step_of_lag(tf_exchange: Path) -> None:
    result = _sim("-c", "simulation_config.json", cwd=tf_exchange)
    assert result.returncode == 0, result.stderr
    _check_timeline(result.stdout, 100)


def test_tf_exchange_with_a_timeout_override_runs_500_steps(tf_exchange: Path) -> None:
    result = _sim("-c", "simulation_config.json", "-o", "SimulationTimeout=5", cwd=tf_exchange)
    assert result.returncode == 0, result.stderr
    _check_timeline(result.stdout, 500)


def test_config_and_directory_are_found_from_elsewhere(tf_exchange: Path, tmp_path: Path) -> None:
    by_dir = _sim(
        "-d", str(tf_exchange), "-c", "simulation_config.json", "-o", "SimulationTimeout=0.1", cwd=tmp_path
    )
    assert by_dir.returncode == 0, by_dir.stderr
    _check_timeline(by_dir.stdout, 10)
    by_path = _sim(
        "-c", str(tf_exchange / "simulation_config.json"), "-o", "SimulationTimeout=0.1", cwd=tmp_path
    )
    assert by_path.returncode == 0, by_path.stderr
    _check_timeline(by_path.stdout, 10)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ((), 1, "usage"),
        (("-d", "."), 2, "-c/--config"),
        (
            ("-c", "simulation_config.json", "-m", "server", "--server_address", "256.0.0.1:1"),
            3,
            "cannot listen",
        ),
        (("-c", "missing.json", "-m", "server"), 1, "not found"),
        (("-c", "simulation_config.json", "-d", "no_such_dir"), 1, "is not a directory"),
        (("-c", "missing.json"), 1, "not found"),
        (("-c", "simulation_config.json", "-o", "EngineConfigs.7.EngineName=x"), 1, "EngineConfigs"),
    ],
)
def test_exit_codes(tf_exchange: Path, args: tuple[str, ...], code: int, message: str) -> None:
    result = _sim(*args, cwd=tf_exchange)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr


def test_help_exits_0(tf_exchange: Path) -> None:
    result = _sim("--help", cwd=tf_exchange)
    assert result.returncode == 0 and "--logoutput" in result.stdout


def test_a_failed_run_exits_1_naming_the_engine(tmp_path: Path) -> None:
    engine = """
    from nrp_core.engines.python_json import EngineScript

    class Script(EngineScript):
        def runLoop(self, timestep_ns):
            raise RuntimeError("broken step")
    """
    write_experiment(tmp_path, {"broken": (engine, 0.01)}, in_process=False)
    result = _sim("-c", "simulation_config.json", cwd=tmp_path)
    assert result.returncode == 1
    assert 'Engine "broken" (broken.py:6): ' in result.stderr and "broken step" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_run_gracefully(tf_exchange: Path, signum: int) -> None:
    proc = subprocess.Popen(
        [*_command(), "-c", "simulation_config.json", "-o", "SimulationTimeout=1000", "--logoutput=engines"],
        cwd=tf_exchange,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = tf_exchange / ".console_output.log"
    wait_until(lambda: log.exists() and log.read_text().count("DataPack 1") >= 5, message="five steps")
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, stderr
    assert "stopped by signal" in stderr
    text = log.read_text()
    assert text.count("Engine 1 is shutting down") == 1 and text.count("Engine 2 is shutting down") == 1
    assert 5 <= text.count("DataPack 1 data is") < 100_000


def test_logoutput_all_and_silent(tf_exchange: Path) -> None:
    everything = _sim(
        "-c", "simulation_config.json", "--logoutput=all", "--logfilename=all.log", cwd=tf_exchange
    )
    assert everything.returncode == 0
    assert everything.stdout == "" and everything.stderr == ""
    text = (tf_exchange / "all.log").read_text()
    assert text.count("DataPack 1 data is") == 100 and "simulation ended" in text
    silent = _sim("-c", "simulation_config.json", "--logoutput=silent", cwd=tf_exchange)
    assert silent.returncode == 0
    assert "DataPack 1" not in silent.stdout + silent.stderr
    assert not (tf_exchange / ".console_output.log").exists()
