"""``nrp run DIR``: runs an experiment without REST server, storage or broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.waiting import HANG

from .helpers import TF_EXCHANGE, set_timeout, wait_until

NRP = [sys.executable, "-c", "from nrp_cli.main import cli; cli()"]
# Python turns SIGINT into KeyboardInterrupt only if SIGINT was not ignored when it started, and a
# test run started in the background of a non-interactive shell ignores it: install the handler.
NRP_WITH_CTRL_C = [
    sys.executable,
    "-c",
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from nrp_cli.main import cli; cli()",
]


def nrp_run(directory: Path, tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, TMPDIR=str(tmp_path), COLUMNS="200")
    return subprocess.run(
        [*NRP, "run", str(directory), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def logs_dir(output: str) -> Path:
    match = re.search(r"Logs are kept in (\S+)", output)
    assert match, output
    return Path(match.group(1))


def test_tf_exchange_runs_to_completion(tmp_path):
    before = sorted(p.name for p in TF_EXCHANGE.iterdir())
    result = nrp_run(TF_EXCHANGE, tmp_path, "--keep")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1.00 / 1.00 s simulated" in result.stdout
    workdir = logs_dir(result.stdout)
    assert workdir.is_relative_to(tmp_path)
    script_log = (workdir / "main_script_0.log").read_text()
    assert "simulation timeout after 100 steps" in script_log
    assert (workdir / ".console_output.log").read_text().count("Engine 2 received data is") == 100
    assert sorted(p.name for p in TF_EXCHANGE.iterdir()) == before  # the original is untouched


def test_script_error_exits_1_and_names_the_line(experiment, tmp_path):
    (experiment / "main_script.py").write_text("nrp.run_loop(2)\nraise ValueError('bad value')\n")
    result = nrp_run(experiment, tmp_path, "--keep")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Runtime error: bad value (main_script.py:2: raise ValueError('bad value'))" in result.stdout
    assert logs_dir(result.stdout).is_dir()


def test_syntax_error_exits_1(experiment, tmp_path):
    (experiment / "main_script.py").write_text("while True\n")
    result = nrp_run(experiment, tmp_path)
    assert result.returncode == 1
    assert "Compile error: SyntaxError in (Line 1)" in result.stdout
    assert "--keep" in result.stdout and "Logs are kept" not in result.stdout
    assert not list(tmp_path.glob("nrp-run-*")), "the run folder was left behind"


def test_run_removes_its_folder_without_keep(experiment, tmp_path):
    set_timeout(experiment, 0.05)
    result = nrp_run(experiment, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Logs are kept" not in result.stdout
    assert not list(tmp_path.glob("nrp-run-*")), "the run folder was left behind"


def test_config_error_exits_1(experiment, tmp_path):
    (experiment / "simulation_config.json").write_text("{")
    result = nrp_run(experiment, tmp_path)
    assert result.returncode == 1
    assert "Could not parse experiment configuration" in result.stdout


def test_without_main_script_runs_standalone(experiment, tmp_path):
    (experiment / "main_script.py").unlink()
    result = nrp_run(experiment, tmp_path, "--keep")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "running nrp-core standalone" in result.stdout
    console = (logs_dir(result.stdout) / ".console_output.log").read_text()
    assert console.count("Engine 2 received data is") == 100


def test_ctrl_c_exits_130(experiment, tmp_path):
    set_timeout(experiment, 100000)
    (experiment / "main_script.py").write_text(
        "nrp.run_loop(1)\nfile_logger.info('running')\nwhile True:\n    nrp.run_loop(100)\n"
    )
    # faulthandler: on a hang, SIGABRT makes the process print every thread's stack
    env = dict(os.environ, TMPDIR=str(tmp_path), COLUMNS="200", PYTHONFAULTHANDLER="1")
    proc = subprocess.Popen(
        [*NRP_WITH_CTRL_C, "run", str(experiment)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        wait_until(
            lambda: any(
                "running" in log.read_text() for log in tmp_path.glob("nrp-run-*/*/main_script_0.log")
            ),
            message="the script to log 'running'",
        )
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=HANG)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            output, _ = proc.communicate(timeout=HANG)
            pytest.fail(f"nrp run still ran {HANG:g} s after Ctrl-C; its threads:\n{output[-8000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "Interrupted" in output


def test_errors_name_files_relative_to_the_experiment(experiment, tmp_path):
    (experiment / "tf_1.py").write_text("import json\njson.loads('{')\n")
    result = nrp_run(experiment, tmp_path)
    assert result.returncode == 1
    assert "error while loading function file 'tf_1.py'" in result.stdout
    assert 'File "tf_1.py", line 2' in result.stdout
    assert "nrp-run-" not in result.stdout + result.stderr  # the temporary copy stays out of sight
