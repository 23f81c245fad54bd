"""Build small experiment folders for the loop, function and client tests."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "experiments"
STATUS_FUNCTION_TEST = FIXTURES / "status_function_test"
LOOP_SYNC = FIXTURES / "loop_sync"
TF_EXCHANGE = HERE.parent.parent / "experiments" / "tf_exchange"

IN_PROCESS = {"LaunchType": "InProcess"}

# A python_json engine publishing ``state`` = {"time", "steps", "input"}; ``input`` is what it was sent.
COUNTING_ENGINE = """
from nrp_core.engines.python_json import EngineScript


class Script(EngineScript):
    def initialize(self):
        self._registerDataPack("state")
        self._registerDataPack("input")
        self._steps = 0
        self._setDataPack("state", {"time": 0, "steps": 0, "input": None})

    def runLoop(self, timestep_ns):
        self._steps += 1
        received = self._getDataPack("input")
        self._setDataPack("state", {"time": self._time_ns, "steps": self._steps, "input": received})
"""


def write_experiment(
    directory: Path,
    engines: dict[str, tuple[str, float]],
    functions: dict[str, str] | None = None,
    status: str | None = None,
    in_process: bool = True,
    **config: Any,
) -> Path:
    """Write engine files, function files and ``simulation_config.json``; returns the config path.

    Args:
        directory: the experiment folder (created).
        engines: ``{engine name: (engine source, timestep s)}`` in config order.
        functions: ``{function name: source}`` in load order (file ``<name>.py``).
        status: the status function source (file ``status.py``, name ``status``).
        in_process: run every engine ``InProcess`` (fast) instead of in its own process.
        config: extra top-level config keys.
    """
    directory.mkdir(parents=True, exist_ok=True)
    engine_configs = []
    for name, (source, timestep) in engines.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
        entry = {"EngineType": "python_json", "EngineName": name, "PythonFileName": f"{name}.py"}
        entry["EngineTimestep"] = timestep
        if in_process:
            entry["EngineLaunchCommand"] = dict(IN_PROCESS)
        engine_configs.append(entry)
    doc: dict[str, Any] = {"SimulationTimeout": 1, "EngineConfigs": engine_configs}
    doc["DataPackProcessingFunctions"] = []
    for name, source in (functions or {}).items():
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
        doc["DataPackProcessingFunctions"].append({"Name": name, "FileName": f"{name}.py"})
    if status is not None:
        (directory / "status.py").write_text(textwrap.dedent(status))
        doc["StatusFunction"] = {"Name": "status", "FileName": "status.py"}
    doc.update(config)
    path = directory / "simulation_config.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def in_process_overrides(count: int) -> list[str]:
    """``-o`` overrides that make the first ``count`` engines run in the loop's process."""
    return [f'EngineConfigs.{i}.EngineLaunchCommand={{"LaunchType":"InProcess"}}' for i in range(count)]


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (it does not exist, or it is a zombie waiting to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")
