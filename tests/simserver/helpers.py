"""Small helpers shared by the Simulation Server tests."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from hbp_nrp_simserver.errors import ScriptError
from tests.helpers.waiting import HANG
from tests.helpers.waiting import wait_until as wait_until  # re-exported for the simserver tests

REPO = Path(__file__).resolve().parents[2]
TF_EXCHANGE = REPO / "experiments" / "tf_exchange"

# engines in the loop's own process: the tests exercise the simserver, not process start-up
IN_PROCESS = " ".join(
    f'-o EngineConfigs.{i}.EngineLaunchCommand={{"LaunchType":"InProcess"}}' for i in range(2)
)


def make_client(experiment: Path, config_file: str = "simulation_config.json", args: str = IN_PROCESS) -> Any:
    """A real nrp-core client on ``experiment`` (engines in-process unless ``args`` says otherwise)."""
    from nrp_core import NrpCore

    return NrpCore("localhost:5345", experiment_folder=str(experiment), config_file=config_file, args=args)


FAILING_TF = """\
from nrp_core import *


@SimulationTime(keyword="t")
@TransceiverFunction("python_2")
def tf_fail(t):
    if t >= 50000000:
        raise ValueError("tf failure at 50 ms")
    return []
"""


def add_failing_function(experiment: Path) -> str:
    """Write ``tf_fail.py`` (raises from 50 ms of simulation time on) and a config using it only.

    Returns:
        the new configuration file name.
    """
    (experiment / "tf_fail.py").write_text(FAILING_TF)
    config = json.loads((experiment / "simulation_config.json").read_text())
    config["DataPackProcessingFunctions"] = [{"Name": "tf_fail", "FileName": "tf_fail.py"}]
    (experiment / "simulation_config_fail.json").write_text(json.dumps(config, indent=2))
    return "simulation_config_fail.json"


def set_timeout(experiment: Path, timeout: float, config_file: str = "simulation_config.json") -> None:
    config = json.loads((experiment / config_file).read_text())
    config["SimulationTimeout"] = timeout
    (experiment / config_file).write_text(json.dumps(config, indent=2))


class Finished:
    """A completion callback that records its calls."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.calls: list[ScriptError | None] = []

    def __call__(self, error: ScriptError | None) -> None:
        self.calls.append(error)
        self.event.set()

    def wait(self, timeout: float = HANG) -> ScriptError | None:
        assert self.event.wait(timeout), "the script did not finish"
        assert len(self.calls) == 1
        return self.calls[0]


def run_to_end(runner: Any, timeout: float = HANG) -> ScriptError | None:
    """Initialize ``runner``, start its script and return what the completion callback got."""
    runner.initialize()
    finished = Finished()
    runner.start(finished)
    return finished.wait(timeout)


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line of ``text`` containing ``needle``."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in script")


def payload_keys() -> list[str]:
    return ["sim_id", "msg", "error_type", "fileName", "line_number", "offset", "line_text"]


class Recorder:
    """A real MQTT client that subscribes to a topic filter and keeps every message."""

    def __init__(self, settings: Any, topic: str = "#") -> None:
        from hbp_nrp_commons.mqtt import MqttConnection, client_id

        self.messages: list[tuple[str, bytes]] = []
        self._changed = threading.Condition()
        self.connection = MqttConnection(settings, client_id("test_recorder"))
        self.connection.connect(HANG)
        self.connection.subscribe(topic, self._on_message, qos=1, timeout=HANG)

    def _on_message(self, topic: str, payload: bytes) -> None:
        with self._changed:
            self.messages.append((topic, payload))
            self._changed.notify_all()

    def payloads(self, topic: str) -> list[Any]:
        """Decoded JSON payloads received on ``topic`` (empty payloads as None)."""
        with self._changed:
            return [json.loads(p) if p else None for t, p in self.messages if t == topic]

    def wait_for(self, topic: str, predicate: Any, timeout: float = HANG) -> Any:
        """Wait for a payload on ``topic`` for which ``predicate(payload)`` is true and return it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for payload in self.payloads(topic):
                    if payload is not None and predicate(payload):
                        return payload
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching message on {topic}; got {self.payloads(topic)}")
                self._changed.wait(left)

    def close(self) -> None:
        self.connection.close()
