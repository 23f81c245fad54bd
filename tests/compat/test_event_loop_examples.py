"""nrp-core's Event Loop examples, run unmodified from a copy of nrp-core's examples folder.

The examples live in ``../shared/upstream/nrp-core/examples`` relative to the repository root (a
test fixture, never part of the project); without it these tests are skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nrp_core.client import NrpCore
from tests.helpers.brokers import BrokerProcess

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO.parent / "shared" / "upstream" / "nrp-core" / "examples" / "event_loop_examples"

pytestmark = pytest.mark.skipif(
    not EXAMPLES.is_dir(), reason=f"nrp-core's examples are not at {EXAMPLES} (test fixture absent)"
)


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(EXAMPLES / name, target)
    return target


def _nrp_core_sim() -> str:
    return str(Path(sys.executable).parent / "NRPCoreSim")


def test_tf_exchange_async_relays_engine_1_time_to_engine_2(
    tmp_path: Path, mqtt_broker: BrokerProcess
) -> None:
    """NRPCoreSim runs the Event Loop for EventLoop.Timeout (11 s); the two async engines (10 s
    each) are ExternalProcesses running ``async_python_json_engine.py``; the graph's node relays
    datapack1 of python_1 to rec_datapack2 of python_2 over MQTT."""
    experiment = _copy("tf_exchange_async", tmp_path)
    env = {**os.environ, "NRP_MQTT_BROKER_ADDRESS": mqtt_broker.address}
    log = tmp_path / "run.log"
    with log.open("w") as out:
        result = subprocess.run(
            [_nrp_core_sim(), "-c", "simulation_config_json.json"],
            cwd=experiment,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
    text = log.read_text()
    assert result.returncode == 0, text
    published = [int(t) for t in re.findall(r"DataPack 1 data is \{'time': (\d+)", text)]
    received = [int(t) for t in re.findall(r"Engine 2 received data is \{'time': (\d+)", text)]
    assert len(published) >= 20, text
    relayed = [t for t in received if t > 0]
    assert len(relayed) >= 10, text
    # Engine 2 only ever sees times engine 1 published, in order.
    assert set(relayed) <= set(published)
    assert relayed == sorted(relayed)
    assert "Engine 1 is shutting down" in text and "Engine 2 is shutting down" in text
    assert "done flag False, timeout True" in text


@pytest.mark.parametrize(
    ("example", "message"),
    [
        ("cpp_nodes_simple", "fn.py:14: createFNFromFactoryModule: C++ functional nodes are not supported"),
        ("husky_braitenberg_async", "runs 'gzserver': Gazebo is not supported"),
        ("husky_braitenberg_ros", "runs 'roslaunch': ROS is not supported"),
        ("husky_braitenberg_spinnaker_ros", "runs 'roslaunch': ROS is not supported"),
        ("spinnaker_simple", "imports pyNN: SpiNNaker (pyNN.spiNNaker) is not supported"),
        ("husky_braitenberg_cg", "EngineType 'gazebo_grpc'"),
        ("husky_braitenberg_spinnaker", "EngineType 'gazebo_grpc'"),
    ],
)
def test_unsupported_features_fail_at_once_naming_the_feature(
    example: str, message: str, tmp_path: Path
) -> None:
    experiment = _copy(example, tmp_path)
    with pytest.raises(Exception) as raised:
        client = NrpCore("", experiment_folder=str(experiment), log_output=None)
        try:
            client.initialize()
        finally:
            client.shutdown()
    assert message in str(raised.value)


def _without_protobuf_nodes(source: str) -> str:
    """mqtt_simple's graph minus its protobuf import and its two protobuf nodes."""
    header, *nodes = source.split("\n\n\n")
    header = "\n".join(line for line in header.splitlines() if "nrp_protobuf" not in line)
    return "\n\n\n".join([header, *(node for node in nodes if "GazeboJoint" not in node)])


def test_mqtt_simple_string_and_json_nodes_echo_over_mqtt(
    tmp_path: Path,
    mqtt_broker: BrokerProcess,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """mqtt_simple's str, JSON and JSON datapack nodes (its protobuf nodes are left out of this copy;
    tests/compat/test_upstream_examples.py runs it whole): each publishes to the topic it subscribes
    to, so from the second tick on it prints what it sent one tick before."""
    experiment = _copy("mqtt_simple", tmp_path)
    graph = experiment / "cg_mqtt.py"
    graph.write_text(_without_protobuf_nodes(graph.read_text()))
    assert "GazeboJoint" not in graph.read_text() and graph.read_text().count("@FunctionalNode") == 3
    monkeypatch.setenv("NRP_MQTT_BROKER_ADDRESS", mqtt_broker.address)
    client = NrpCore("", experiment_folder=str(experiment), log_output=None)
    client.initialize()
    try:
        done, timed_out, _ = client.run_until_timeout()  # EventLoop.Timeout: 1 s at 0.1 s
    finally:
        client.shutdown()
    assert (done, timed_out) == (False, True)
    out = capfd.readouterr().out
    assert "Message from mqtt str: Hi there!" in out
    assert 'Message from mqtt json: {"hi":"there"}' in out
    assert (
        'Message from mqtt json datapack: - name: dp_name\n- engine: engine_name\n- data: {"hi":"there"}'
        in out
    )
