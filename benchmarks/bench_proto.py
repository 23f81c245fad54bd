"""Protobuf datapacks, ``python_grpc`` engines and ``NRPCoreSim -m server``.

Target (issue 9): engine processes <= 40 us per step (median); the other figures are information.

Same-run figures, best (median) of ``REPEATS`` interleaved runs, on a tf_exchange written with
``python_grpc`` engines (a ``Dump.String`` clock forwarded by a TF, generated in a temporary folder):

- ``python_grpc`` engines in their own processes (local channel, the default), per step; and,
  as its baseline, the same with receives that block at once instead of polling first
  (``NRP_ENGINE_SPIN_US=0``, as before polling existed);
- the same engines as ``EngineGrpcService`` servers reached over gRPC (``EmptyLaunchCommand``), per step;
- per call of ``run_loop(1)``: the in-process ``NrpCore`` against nrp-core's own client
  (``nrp-client``) driving ``NRPCoreSim -m server`` over gRPC; the latter runs when the
  ``.venv-nrp-client`` environment exists (see ``tests/nrp_core/test_sim_server.py``).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from nrp_core.client import NrpCore
from nrp_core.engines.channel import SPIN_ENV

STEPS = 3_000
CALLS = 1_000
REPEATS = 5
ROOT = Path(__file__).resolve().parent.parent
CLIENT_PYTHON = ROOT / ".venv-nrp-client" / "bin" / "python"

ENGINE_1 = """
from nrp_core.engines.python_grpc import GrpcEngineScript
from nrp_protobuf import dump_pb2


class Script(GrpcEngineScript):
    def initialize(self):
        self._registerDataPack("datapack1", dump_pb2.String)
        self._getDataPack("datapack1").string_stream = str(self._time_ns)

    def runLoop(self, timestep_ns):
        self._getDataPack("datapack1").string_stream = str(self._time_ns)
"""
ENGINE_2 = """
from nrp_core.engines.python_grpc import GrpcEngineScript
from nrp_protobuf import dump_pb2


class Script(GrpcEngineScript):
    def initialize(self):
        self._registerDataPack("rec_datapack2", dump_pb2.String)

    def runLoop(self, timestep_ns):
        self._getDataPack("rec_datapack2").string_stream
"""
TF = """
from nrp_core import *
from nrp_core.data.nrp_protobuf import DumpStringDataPack


@EngineDataPack(keyword="clock", id=DataPackIdentifier("datapack1", "python_1"))
@TransceiverFunction("python_2")
def forward(clock):
    forwarded = DumpStringDataPack("rec_datapack2", "python_2")
    forwarded.data.string_stream = clock.data.string_stream
    return [forwarded]
"""


def _experiment(folder: Path) -> Path:
    engines = [
        {
            "EngineType": "python_grpc",
            "EngineName": name,
            "PythonFileName": file,
            "ProtobufPackages": ["Dump"],
        }
        for name, file in (("python_1", "engine_1.py"), ("python_2", "engine_2.py"))
    ]
    config = {
        "SimulationName": "tf_exchange_grpc",
        "SimulationTimeout": 1_000_000,
        "EngineConfigs": engines,
        "DataPackProcessingFunctions": [{"Name": "forward", "FileName": "tf.py"}],
    }
    (folder / "simulation_config.json").write_text(json.dumps(config))
    for name, text in (("engine_1.py", ENGINE_1), ("engine_2.py", ENGINE_2), ("tf.py", TF)):
        (folder / name).write_text(text)
    return folder


def _per_step(folder: Path, overrides: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds per step of ``STEPS`` steps, with ``env`` set while the engines start and run."""
    saved = {name: os.environ.get(name) for name in env or {}}
    os.environ.update(env or {})
    try:
        client = NrpCore("localhost:0", experiment_folder=str(folder), log_output=None, overrides=overrides)
        client.initialize()
        try:
            start = time.perf_counter()
            client.run_loop(STEPS)
            return (time.perf_counter() - start) / STEPS
        finally:
            client.shutdown()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _grpc_servers(folder: Path) -> tuple[list[subprocess.Popen], list[str]]:
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nrp_core.engines.grpc",
                "--engine-type=python_grpc",
                "--server_address=localhost:0",
            ],
            cwd=folder,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    overrides = []
    for index, server in enumerate(servers):
        assert server.stdout is not None
        address = server.stdout.readline().strip().removeprefix("Listening on grpc://")
        overrides += [
            f'EngineConfigs.{index}.EngineLaunchCommand={{"LaunchType":"EmptyLaunchCommand"}}',
            f"EngineConfigs.{index}.ServerAddress={address}",
        ]
    return servers, overrides


def _in_process_calls(folder: Path) -> float:
    client = NrpCore("localhost:0", experiment_folder=str(folder), log_output=None)
    client.initialize()
    try:
        start = time.perf_counter()
        for _ in range(CALLS):
            client.run_loop(1)
        return (time.perf_counter() - start) / CALLS
    finally:
        client.shutdown()


def _nrp_client_calls(folder: Path) -> float | None:
    if not CLIENT_PYTHON.exists():
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = textwrap.dedent(
        f"""
        import time
        from nrp_client import NrpCore
        client = NrpCore("localhost:{port}", experiment_folder={str(folder)!r}, log_output="")
        client.initialize()
        start = time.perf_counter()
        for _ in range({CALLS}):
            client.run_loop(1)
        print((time.perf_counter() - start) / {CALLS})
        client.shutdown()
        """
    )
    env = dict(os.environ)
    env["PATH"] = str(CLIENT_PYTHON.parent) + os.pathsep + env.get("PATH", "")
    done = subprocess.run(
        [str(CLIENT_PYTHON), "-c", script], capture_output=True, text=True, env=env, timeout=600
    )
    lines = done.stdout.strip().splitlines()
    return float(lines[-1]) if done.returncode == 0 and lines else None


def main() -> None:
    runs: dict[str, list[float]] = {
        "processes": [],
        "blocking": [],
        "grpc": [],
        "in_process_call": [],
        "nrp_client_call": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = _experiment(Path(tmp))
        for _ in range(REPEATS):
            runs["processes"].append(_per_step(folder, []))
            runs["blocking"].append(_per_step(folder, [], {SPIN_ENV: "0"}))
            servers, overrides = _grpc_servers(folder)
            try:
                runs["grpc"].append(_per_step(folder, overrides))
            finally:
                for server in servers:
                    server.wait(30)
            runs["in_process_call"].append(_in_process_calls(folder))
            nrp_client = _nrp_client_calls(folder)
            if nrp_client is not None:
                runs["nrp_client_call"].append(nrp_client)

    def show(name: str) -> str:
        values = runs[name]
        if not values:
            return "skipped (no .venv-nrp-client)"
        return f"{min(values) * 1e6:7.1f} ({statistics.median(values) * 1e6:7.1f}) us"

    rows = [
        (f"engine processes, per step ({STEPS} steps):", "processes"),
        (f"  the same, blocking receives ({SPIN_ENV}=0):", "blocking"),
        (f"EngineGrpcService over gRPC, per step ({STEPS} steps):", "grpc"),
        (f"in-process NrpCore run_loop(1), per call ({CALLS}):", "in_process_call"),
        ("nrp-client run_loop(1) via NRPCoreSim -m server:", "nrp_client_call"),
    ]
    print(f"tf_exchange with python_grpc engines, best (median) of {REPEATS} interleaved runs")
    for label, name in rows:
        print(f"  {label:<54} {show(name)}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
