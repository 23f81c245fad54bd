"""The async engine commands: an engine on its own clock, exchanging datapacks over MQTT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE
from tests.helpers.brokers import BrokerProcess
from tests.helpers.waiting import wait_until

ENGINE = """
from nrp_core.engines.python_json import EngineScript


class Script(EngineScript):
    def initialize(self):
        self._registerDataPack("out")
        self._registerDataPack("cmd")
        self._setDataPack("out", {"time": 0, "cmd": None})

    def runLoop(self, timestep_ns):
        self._setDataPack("out", {"time": self._time_ns, "cmd": self._getDataPack("cmd")})
"""


def _command(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_json_async_engine_publishes_its_datapacks_and_applies_received_ones(
    tmp_path: Path, mqtt_broker: BrokerProcess
) -> None:
    import paho.mqtt.client as mqtt

    (tmp_path / "engine.py").write_text(ENGINE)
    config = {
        "Timestep": 0.02,
        "Timeout": 20,
        "EngineConfig": {"EngineName": "eng", "PythonFileName": "engine.py"},
    }
    (tmp_path / "conf.json").write_text(json.dumps(config))
    seen: list[dict[str, Any]] = []
    applied = threading.Event()

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        payload = json.loads(message.payload)
        seen.append(payload)
        if payload["data"]["cmd"] == {"go": 1}:
            applied.set()

    peer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="async-engine-peer")
    peer.on_message = on_message
    peer.connect(mqtt_broker.host, mqtt_broker.port)
    peer.subscribe("eng/get/out", 1)
    peer.loop_start()
    env = {**os.environ, "NRP_MQTT_BROKER_ADDRESS": mqtt_broker.address}
    proc = subprocess.Popen(
        [_command("async_python_json_engine.py"), "--config=conf.json", "--loglevel=info"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        command = {"name": "cmd", "engine_name": "eng", "type": JSON_DATAPACK_TYPE, "data": {"go": 1}}

        def applied_or_exited() -> bool:
            # Until the engine has subscribed, messages are lost: publish each time.
            peer.publish("eng/set/cmd", json.dumps(command), qos=1)
            return applied.wait(0.1) or proc.poll() is not None

        wait_until(applied_or_exited, message="the engine to apply a datapack")
        assert applied.is_set(), proc.stdout.read().decode() if proc.stdout else "the engine exited"
        proc.terminate()  # SIGTERM: the loop stops and the engine shuts down cleanly
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        peer.loop_stop()
        peer.disconnect()
    assert proc.returncode == 0, output.decode()
    first = seen[0]
    assert first["name"] == "out" and first["engine_name"] == "eng" and first["type"] == JSON_DATAPACK_TYPE
    times = [message["data"]["time"] for message in seen]
    assert times == sorted(times) and times[0] >= 20_000_000
    assert "Received stop signal" in output.decode()


GRPC_ENGINE = """
from nrp_core.engines.python_grpc import GrpcEngineScript
from nrp_protobuf import dump_pb2


class Script(GrpcEngineScript):
    def initialize(self):
        self._registerDataPack("out", dump_pb2.String)
        self._registerDataPack("cmd", dump_pb2.String)

    def runLoop(self, timestep_ns):
        self._getDataPack("out").string_stream = f"{self._time_ns} {self._getDataPack('cmd').string_stream}"
"""


def test_grpc_async_engine_exchanges_datapack_messages(tmp_path: Path, mqtt_broker: BrokerProcess) -> None:
    import paho.mqtt.client as mqtt
    from nrp_protobuf import dump_pb2
    from nrp_protobuf.engine_grpc_pb2 import DataPackMessage

    (tmp_path / "engine.py").write_text(GRPC_ENGINE)
    config = {
        "Timestep": 0.02,
        "Timeout": 20,
        "EngineConfig": {"EngineName": "eng", "PythonFileName": "engine.py", "ProtobufPackages": ["Dump"]},
    }
    (tmp_path / "conf.json").write_text(json.dumps(config))
    seen: list[Any] = []
    applied = threading.Event()

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        datapack = DataPackMessage.FromString(message.payload)
        text = dump_pb2.String()
        datapack.data.Unpack(text)
        seen.append((datapack.dataPackId.dataPackName, datapack.dataPackId.engineName, text.string_stream))
        if text.string_stream.endswith(" go"):
            applied.set()

    peer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="async-grpc-engine-peer")
    peer.on_message = on_message
    peer.connect(mqtt_broker.host, mqtt_broker.port)
    peer.subscribe("eng/get/out", 1)
    peer.loop_start()
    env = {**os.environ, "NRP_MQTT_BROKER_ADDRESS": mqtt_broker.address}
    proc = subprocess.Popen(
        [_command("async_python_grpc_engine.py"), "--config=conf.json", "--loglevel=info"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        command = DataPackMessage()
        command.dataPackId.dataPackName = "cmd"
        command.dataPackId.engineName = "eng"
        command.data.Pack(dump_pb2.String(string_stream="go"))

        def applied_or_exited() -> bool:
            peer.publish("eng/set/cmd", command.SerializeToString(), qos=1)
            return applied.wait(0.1) or proc.poll() is not None

        wait_until(applied_or_exited, message="the engine to apply a datapack")
        assert applied.is_set(), proc.stdout.read().decode() if proc.stdout else "the engine exited"
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        peer.loop_stop()
        peer.disconnect()
    assert proc.returncode == 0, output.decode()
    assert seen[0][:2] == ("out", "eng")
    times = [int(text.split()[0]) for _name, _engine, text in seen]
    assert times == sorted(times) and times[0] >= 20_000_000


def test_bad_config_fails_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "conf.json").write_text(json.dumps({"Timestep": 0.1}))
    result = subprocess.run(
        [_command("async_python_json_engine.py"), "--config=conf.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "'EngineConfig' object" in result.stderr


def test_nrp_core_names_for_writing_an_async_engine_script() -> None:
    from nrp_core.engines.python_json import (
        JSONEngineWrapper,
        JSONEventLoopEngine,
        parseAndValidateEngineConfig,
    )
    from nrp_core.event_loop import EngineWrapper, EventLoopEngine, run_event_loop_engine_app
    from nrp_core.event_loop.async_main import json_main

    assert issubclass(JSONEngineWrapper, EngineWrapper) and issubclass(JSONEventLoopEngine, EventLoopEngine)
    assert callable(parseAndValidateEngineConfig) and callable(run_event_loop_engine_app)
    assert json_main.__module__ == "nrp_core.event_loop.async_main"


def test_pysim_async_engine_runs_the_gym_cartpole_engine(tmp_path: Path, mqtt_broker: BrokerProcess) -> None:
    import shutil

    import paho.mqtt.client as mqtt

    pytest.importorskip("gymnasium")
    experiment = tmp_path / "gym_cartpole"
    shutil.copytree(Path(__file__).resolve().parents[2] / "experiments" / "gym_cartpole", experiment)
    engine = json.loads((experiment / "simulation_config.json").read_text())["EngineConfigs"][0]
    engine = {k: v for k, v in engine.items() if k not in ("EngineType", "EngineTimestep")}
    (experiment / "async.json").write_text(
        json.dumps({"Timestep": 0.02, "Timeout": 0.5, "EngineConfig": engine})
    )
    observations: list[Any] = []
    peer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pysim-peer")
    peer.on_message = lambda _c, _u, message: observations.append(json.loads(message.payload))
    peer.connect(mqtt_broker.host, mqtt_broker.port)
    peer.subscribe("gym_simulator/get/observation", 1)
    peer.loop_start()
    try:
        result = subprocess.run(
            [_command("async_pysim_engine.py"), "--config=async.json"],
            cwd=experiment,
            env={**os.environ, "NRP_MQTT_BROKER_ADDRESS": mqtt_broker.address},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        peer.loop_stop()
        peer.disconnect()
    assert result.returncode == 0, result.stdout + result.stderr
    assert observations, result.stdout + result.stderr
    assert observations[0]["engine_name"] == "gym_simulator" and "observation" in observations[0]["data"]
