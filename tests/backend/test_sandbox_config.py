"""The sandbox's settings and command line, and the error of a sandbox that cannot start."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hbp_nrp_backend.sandbox import (
    Limits,
    SandboxConfig,
    bwrap_arguments,
    load_sandbox_config,
    prlimit_arguments,
    readonly_paths,
    wrap_command,
)
from hbp_nrp_backend.simserver_process import ProcessExit, SimulationServerProcess
from hbp_nrp_commons.settings import SettingsError


def test_defaults_protect_a_24_gb_machine_with_eight_simulations() -> None:
    config = load_sandbox_config({"NRP_SANDBOX": "none"})
    assert config.mode == "none" and config.requested == "none"
    assert config.limits.memory_mb <= 4096 and 8 * config.limits.memory_mb * 2**20 < 24 * 10**9


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NRP_SANDBOX": "docker"}, "NRP_SANDBOX must be one of"),
        (
            {"NRP_SANDBOX": "none", "NRP_SANDBOX_MEMORY_MB": "lots"},
            "NRP_SANDBOX_MEMORY_MB must be an integer",
        ),
        ({"NRP_SANDBOX": "none", "NRP_SANDBOX_UID_BASE": "0"}, "NRP_SANDBOX_UID_BASE must be at least"),
    ],
)
def test_bad_values_name_their_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_sandbox_config(env)


def test_bwrap_asked_for_but_missing_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(SettingsError, match="bubblewrap"):
        load_sandbox_config({"NRP_SANDBOX": "bwrap"})
    assert load_sandbox_config({}).mode == "none"  # auto without bwrap


def test_folders_holding_or_inside_the_data_root_are_never_bound(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for folder in ("data/storage", "data/venv", "venv/lib", "src", "src/pkg"):
        (tmp_path / folder).mkdir(parents=True)
    candidates = [
        tmp_path,
        data / "venv",
        tmp_path / "venv",
        tmp_path / "venv" / "lib",
        tmp_path / "src" / "pkg",
    ]
    assert readonly_paths(candidates, [data]) == [tmp_path / "venv", tmp_path / "src" / "pkg"]


def test_the_simulation_directory_is_the_only_writable_bind(tmp_path: Path) -> None:
    args = bwrap_arguments(tmp_path / "sim", [tmp_path / "python"], 64)
    binds = [args[i + 1] for i, arg in enumerate(args) if arg == "--bind"]
    assert binds == [str(tmp_path / "sim")]
    python = str(tmp_path / "python")
    assert any(args[i : i + 3] == ["--ro-bind", python, python] for i in range(len(args)))
    assert "--unshare-pid" in args and "--die-with-parent" in args and "--unshare-net" not in args


def test_limits_become_prlimit_options() -> None:
    limits = Limits(cpu_seconds=10, file_mb=1, processes=20)
    assert prlimit_arguments(limits, own_uid=True) == [
        "prlimit",
        "--cpu=10:15",
        f"--fsize={2**20}",
        "--nproc=20",
        "--",
    ]
    assert "--nproc=20" not in prlimit_arguments(limits, own_uid=False)  # it would count the server's
    assert prlimit_arguments(Limits(cpu_seconds=0, file_mb=0, processes=0), own_uid=True) == []


def test_unsandboxed_commands_keep_only_the_limits(tmp_path: Path) -> None:
    command = wrap_command(["python", "-m", "x"], SandboxConfig(mode="none"), tmp_path, "x", [], None)
    assert command[0] == "prlimit" and command[-3:] == ["python", "-m", "x"] and "bwrap" not in command


def test_a_root_server_drops_to_the_simulations_uid_inside_the_sandbox(tmp_path: Path) -> None:
    command = wrap_command(
        ["python"], SandboxConfig(mode="bwrap"), tmp_path, "hbp_nrp_simserver", [], 1800000007
    )
    after = command[command.index("--", command.index("bwrap")) + 1 :]
    assert after[0] == "setpriv" and "--reuid=1800000007" in after and "--no-new-privs" in after
    assert after[-1] == "python"


def test_a_sandbox_that_cannot_start_says_so(tmp_path: Path) -> None:
    exits: list[ProcessExit] = []
    code = "import sys; sys.stderr.write('bwrap: execvp python: No such file\\n'); sys.exit(1)"
    process = SimulationServerProcess(
        [sys.executable, "-c", code], tmp_path, 3, dict(os.environ), exits.append, sandboxed=True
    )
    process.start()
    assert process.wait(10)
    assert process.exit is not None and process.exit.failed, process.exit
    message = process.exit.error()["msg"]
    assert message.startswith("Sandbox could not start (bwrap: execvp python: No such file)"), message


def test_folders_under_tmp_are_bound_after_the_private_tmp(tmp_path: Path) -> None:
    """A Python installation or source tree under /tmp (pytest's own folders are there) is bound
    into the sandbox's private /tmp, not hidden by it."""
    python = tmp_path / "venv"
    assert str(python).startswith("/tmp/")
    args = bwrap_arguments(tmp_path / "sim", [python], 64)
    tmpfs = next(i for i in range(len(args) - 1) if args[i : i + 2] == ["--tmpfs", "/tmp"])
    bind = next(i for i in range(len(args) - 2) if args[i : i + 3] == ["--ro-bind", str(python), str(python)])
    assert tmpfs < bind
