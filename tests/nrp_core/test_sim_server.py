"""``NRPCoreSim -m server`` driven by nrp-core's own, unmodified Python client (PyPI ``nrp-client``
1.4.0), and by a bare gRPC stub for the error paths.

nrp-client needs protobuf 4 and ``pkg_resources``, so it runs in its own virtual environment,
``.venv-nrp-client`` at the repository root (ignored by git), created once with our package and its
``nrp-client`` extra. Each test runs a driver script there; the script prints one JSON line of
results. The client forks the ``NRPCoreSim`` of that environment, found on ``PATH``.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

from tests.nrp_core.loop_helpers import FIXTURES, STATUS_FUNCTION_TEST

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ENV = ROOT / ".venv-nrp-client"
PROTO_EXCHANGE = FIXTURES / "proto_exchange"


@pytest.fixture(scope="session")
def client_python() -> Path:
    """The Python of ``.venv-nrp-client`` (created on first use; skipped when it cannot be)."""
    python = CLIENT_ENV / "bin" / "python"
    stamp = CLIENT_ENV / ".installed"
    # Rebuilt when pyproject.toml changes (our package is installed editable: code changes apply).
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        try:
            venv.create(CLIENT_ENV, with_pip=True, clear=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[nrp-client]"],
                check=True,
                capture_output=True,
                timeout=900,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"cannot create the nrp-client environment {CLIENT_ENV.name}: {exc}")
        stamp.write_text(wanted)
    return python


def drive(python: Path, body: str, folder: Path, timeout: float = 240) -> dict:
    """Run ``body`` with ``NrpCore`` of nrp-client, ``folder`` and ``address`` (a free port) defined."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = (
        "import json, sys\n"
        "from nrp_client import NrpCore\n"
        f"folder = {str(folder)!r}\n"
        f"address = 'localhost:{port}'\n"
        "result = {}\n"
        "def main():\n" + textwrap.indent(textwrap.dedent(body), "    ") + "\n"
        "main()\n"
        "print('RESULT ' + json.dumps(result), flush=True)\n"
    )
    env = dict(os.environ)
    env["PATH"] = str(python.parent) + os.pathsep + env.get("PATH", "")
    done = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, timeout=timeout, env=env, cwd=folder
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"driver failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(lines[-1].removeprefix("RESULT "))


def _copy(tmp_path: Path, source: Path) -> Path:
    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    return folder


def _no_server_left(folder: Path) -> None:
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not [line for line in listing.splitlines() if "NRPCoreSim" in line and str(folder) in line]


def test_nrp_client_drives_a_session_with_json_and_protobuf_datapacks(client_python, tmp_path) -> None:
    folder = _copy(tmp_path, PROTO_EXCHANGE)
    result = drive(
        client_python,
        """
        from nrp_protobuf import dump_pb2
        client = NrpCore(address, experiment_folder=folder, config_file="simulation_config.json")
        result["created"] = client.current_state()
        initial = client.initialize()
        result["initial"] = [str(type(item).__name__) for item in initial]
        result["initialized"] = client.current_state()
        client.set_proto_datapack("command", "receiver", dump_pb2.String(string_stream="go"))
        client.set_json_datapack("count", "json", {"value": 7})
        done, trajectory = client.run_loop(4)
        result["done"] = done
        result["strs"] = [item.str for item in trajectory[0::2]]
        result["types"] = [type(item).__name__ for item in trajectory[0::2]]
        result["labels"] = [item["label"] for item in trajectory[1::2]]
        result["json_counts"] = [item["json_count"] for item in trajectory[1::2]]
        result["stopped"] = client.current_state()
        client.reset()
        result["after_reset"] = client.current_state()
        result["short"] = list(client.run_loop(1))
        result["until_timeout"] = [client.run_until_timeout()[i] for i in (0, 1)]
        client.shutdown()
        result["after_shutdown"] = client.current_state()
        """,
        folder,
    )
    assert result["created"] == "Created" and result["initialized"] == "Initialized"
    assert result["initial"] == ["Int32Value", "String", "TestPayload", "dict"]
    assert result["done"] is True
    assert result["types"] == ["TestPayload"] * 4
    assert result["strs"] == ["", "", "go", "go"]
    assert result["labels"] == ["start", "t=10000000", "t=20000000", "t=30000000"]
    # a client datapack wins over the TF's one for the same datapack, and stays until reset
    assert result["json_counts"] == [-1, 7, 7, 7]
    assert result["stopped"] == "Stopped" and result["after_reset"] == "Initialized"
    assert result["short"] == [False, []]
    # the iteration count is not reset, so the done flag (iteration 3) is not met again
    assert result["until_timeout"] == [False, True]
    _no_server_left(folder)


def test_nrp_client_sees_failures_with_file_and_line_and_state_errors(client_python, tmp_path) -> None:
    folder = _copy(tmp_path, PROTO_EXCHANGE)
    (folder / "forward.py").write_text(
        (folder / "forward.py").read_text().replace("    forwarded = ", "    1 / 0\n    forwarded = ")
    )
    result = drive(
        client_python,
        """
        client = NrpCore(address, experiment_folder=folder, config_file="simulation_config.json")
        try:
            client.run_loop(1)
        except ConnectionError as exc:
            result["wrong_state"] = str(exc)
        client.initialize()
        try:
            client.run_loop(1)
        except RuntimeError as exc:
            result["failure"] = str(exc)
        result["state"] = client.current_state()
        client.shutdown()
        """,
        folder,
    )
    assert "Can't process request" in result["wrong_state"]
    assert 'Function "forward" (forward.py:9): ZeroDivisionError' in result["failure"]
    assert result["state"] == "Failed"
    _no_server_left(folder)


def test_nrp_client_stops_a_run_and_passes_args(client_python, tmp_path) -> None:
    folder = _copy(tmp_path, STATUS_FUNCTION_TEST)
    result = drive(
        client_python,
        """
        client = NrpCore(address, experiment_folder=folder, config_file="simulation_config.json",
                         args="-o SimulationTimeout=1000")
        client.initialize()
        response = []
        thread = client.run_until_timeout(run_async=True, response=response)
        # nrp-client learns the state from replies only: repeat stop() until the run has ended
        # (a stop() reaching the server before the run starts is cleared by the run).
        while thread.is_alive():
            client.stop()
            thread.join(0.05)
        result["flags"] = [response[0].doneFlag, response[0].timeoutFlag]
        client.stop()  # its reply carries the server's state (a stop reply sent mid-run may arrive last)
        result["state"] = client.current_state()
        client.shutdown()
        """,
        folder,
    )
    assert result["flags"] == [False, False]
    assert result["state"] == "Stopped"


def test_busy_port_fails_fast_without_orphans(client_python, tmp_path) -> None:
    folder = _copy(tmp_path, STATUS_FUNCTION_TEST)
    with socket.socket() as busy:  # bound, not listening: our server cannot bind, nothing answers
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        result = drive(
            client_python,
            f"""
            # nrp-client's constructor does not notice a server that exited at once (it only
            # raises after server_timeout seconds); the first call then fails.
            client = NrpCore("127.0.0.1:{port}", experiment_folder=folder, server_timeout=60)
            try:
                client.initialize()
            except ConnectionError as exc:
                result["error"] = str(exc)
            """,
            folder,
        )
    assert result["error"] == "NRP Server is unavailable"
    log = (folder / ".console_output.log").read_text()
    assert f"cannot listen on 127.0.0.1:{port}" in log
    _no_server_left(folder)


def test_slave_server_exits_when_its_parent_dies(tmp_path) -> None:
    folder = _copy(tmp_path, STATUS_FUNCTION_TEST)
    # A parent shell that starts the server and is then killed.
    parent = subprocess.Popen(
        [
            "sh",
            "-c",
            f"{sys.executable} -m nrp_core.sim_main -c simulation_config.json -m server "
            "--server_address localhost:0 --slave & echo $!; wait",
        ],
        cwd=folder,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    server_pid = int(parent.stdout.readline())
    assert parent.stdout.readline().startswith("Listening on grpc://")
    watch = os.pidfd_open(server_pid)  # readable once the process has exited
    try:
        parent.kill()
        parent.wait()
        # The orphan notices its parent's death within its watchdog period and exits.
        readable, _, _ = select.select([watch], [], [], 60)
        assert readable, "the slave server outlived its parent"
    finally:
        os.close(watch)
