"""nrp-core's own example configs, run unmodified with ``NRPCoreSim`` (and some with ``nrp run``).

The examples are nrp-core's (``../shared/upstream/nrp-core`` beside the repository; the tests skip
when it is absent). Each config runs in a temporary copy of its folder. A config either runs to its
end (exit code 0), or fails at once for a cause listed in ``NOT_RUN``, with a message that says what
is not supported; the summary at the end of the test session counts them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compat.conftest import RESULTS
from tests.helpers.brokers import BrokerProcess
from tests.sim.helpers import tvb_data_standin

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT.parent / "shared" / "upstream" / "nrp-core"
EXAMPLES = UPSTREAM / "examples"

NOT_SUPPORTED = "not supported"
# Configs with MQTT nodes or async engines get the test broker (NRP_MQTT_BROKER_ADDRESS); one kind.
ONE_BROKER = pytest.mark.parametrize("_mqtt_broker_process", ["amqtt"], indirect=True)
# config -> (what the error names, the cause in words); everything else must run.
NOT_RUN: dict[str, tuple[str, str]] = {
    "baseball_icub/simulation_config.json": (NOT_SUPPORTED, "gazebo_grpc engine"),
    "husky_braitenberg/simulation_config.json": (NOT_SUPPORTED, "gazebo_grpc engine"),
    "husky_braitenberg/simulation_config_data_transfer.json": (NOT_SUPPORTED, "gazebo_grpc engine"),
    "husky_braitenberg/simulation_config_docker-compose.json": (NOT_SUPPORTED, "gazebo_grpc, nest_server"),
    "husky_braitenberg/simulation_config_docker.json": (NOT_SUPPORTED, "gazebo_grpc engine"),
    "husky_braitenberg/simulation_config_nest_server.json": (NOT_SUPPORTED, "gazebo_grpc, nest_server"),
    "husky_braitenberg/simulation_config_nest_server_empty_launch.json": (
        NOT_SUPPORTED,
        "gazebo_grpc, nest_server",
    ),
    "husky_braitenberg_json/simulation_config.json": (NOT_SUPPORTED, "gazebo_json engine"),
    "husky_braitenberg_multi_robot/simulation_config.json": (NOT_SUPPORTED, "gazebo_grpc engine"),
    "templates/husky_braitenberg/simulation_config.json": (NOT_SUPPORTED, "gazebo_grpc engine"),
    "templates/husky_braitenberg/simulation_config_nest_server_empty_launch.json": (
        NOT_SUPPORTED,
        "gazebo_grpc, nest_server",
    ),
    "visual_tracking_icub/simulation_config.json": (NOT_SUPPORTED, "gazebo_grpc engine"),
    "event_loop_examples/husky_braitenberg_cg/simulation_config.json": (NOT_SUPPORTED, "gazebo_grpc engine"),
    "event_loop_examples/husky_braitenberg_spinnaker/simulation_config.json": (
        NOT_SUPPORTED,
        "gazebo_grpc engine",
    ),
    "event_loop_examples/cpp_nodes_simple/simulation_config.json": (NOT_SUPPORTED, "C++ functional nodes"),
    "event_loop_examples/husky_braitenberg_async/simulation_config.json": (
        NOT_SUPPORTED,
        "Gazebo (gzserver)",
    ),
    "event_loop_examples/husky_braitenberg_ros/simulation_config.json": (NOT_SUPPORTED, "ROS"),
    "event_loop_examples/husky_braitenberg_spinnaker_ros/simulation_config.json": (NOT_SUPPORTED, "ROS"),
    "event_loop_examples/spinnaker_simple/simulation_config.json": (NOT_SUPPORTED, "SpiNNaker (pyNN)"),
    "nest_simple/simulation_config_docker.json": (NOT_SUPPORTED, "DockerLauncher"),
    "tf_exchange/simulation_config_docker.json": (NOT_SUPPORTED, "DockerLauncher"),
    "pysim_examples/opensim_control/simulation_config_docker.json": (NOT_SUPPORTED, "DockerLauncher"),
    "nrp_vectorization/simulation_config.json": (
        "No module named 'gym'",
        "the legacy 'gym' package its engine imports (only gymnasium is installed) is",
    ),
    "pysim_examples/multi_nrp/env_engines/simulation_config_train.json": (
        "No module named 'nrp_core.engines.py_sim.ConvertLib'",
        "py_sim's ConvertLib and PPO Trainer (torch), which its engines import, are",
    ),
}


# nrp-core's OpenSim + TVB brain loads a connectivity PyPI's tvb-data lacks (a stand-in goes on the
# engines' path, see tests/sim/helpers.py: tvb_data_standin); its 50 s runs are shortened with
# NRPCoreSim's -o (the files stay unmodified; tests/sim/test_upstream_simulators.py checks the arm).
TVB_CONFIGS = {
    "opensim_tvb/simulation_config.json",
    "opensim_tvb/simulation_config_xpra.json",
    "templates/opensim_tvb/simulation_config.json",
    "templates/opensim_tvb/simulation_config_xpra.json",
}


def _configs() -> list[str]:
    if not EXAMPLES.is_dir():
        return []
    return sorted(
        str(path.relative_to(EXAMPLES))
        for path in EXAMPLES.rglob("*.json")
        if '"SimulationName"' in path.read_text(errors="replace")
    )


CONFIGS = _configs()
pytestmark = pytest.mark.skipif(not CONFIGS, reason=f"nrp-core's examples are not at {UPSTREAM}")


def _copy(tmp_path: Path, config: str) -> Path:
    source = (EXAMPLES / config).parent
    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    return folder


def _error(output: str) -> str:
    """The last error line of a run's output, without its time and logger name."""
    lines = [line for line in output.splitlines() if "[ERROR]" in line] or output.strip().splitlines()
    text = lines[-1] if lines else "no output"
    return re.sub(r"^\[[^]]*\] \[[^]]*\] \[ERROR\] ", "", text)[:300]


def test_every_config_is_listed() -> None:
    assert CONFIGS, "no example configs found"
    assert set(NOT_RUN) <= set(CONFIGS), sorted(set(NOT_RUN) - set(CONFIGS))


@ONE_BROKER
@pytest.mark.parametrize("config", CONFIGS)
def test_example_config(config: str, tmp_path: Path, mqtt_broker: BrokerProcess) -> None:
    folder = _copy(tmp_path, config)
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["NRP_MQTT_BROKER_ADDRESS"] = mqtt_broker.address  # the Event Loop's and async engines' broker
    options: list[str] = []
    if config in TVB_CONFIGS:
        standin = tvb_data_standin(tmp_path)
        if standin is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(standin), env.get("PYTHONPATH")]))
        options = ["-o", "SimulationTimeout=2"]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "NRPCoreSim"), "-c", Path(config).name, *options],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    output = result.stderr + result.stdout
    expected = NOT_RUN.get(config)
    if result.returncode == 0:
        RESULTS[config] = ""
        assert expected is None, f"{config} runs now: remove it from NOT_RUN"
        return
    RESULTS[config] = f"{expected[1]} not supported" if expected else _error(output)
    assert expected is not None, f"{config} failed:\n{output[-4000:]}"
    assert expected[0] in output, f"{config} failed differently:\n{output[-4000:]}"


@pytest.mark.parametrize("config", ["simulation_config_grpc.json", "simulation_config_datatransfer.json"])
def test_tf_exchange_template_runs_with_nrp_run(config: str, tmp_path: Path) -> None:
    if "templates/tf_exchange/" + config not in CONFIGS:
        pytest.skip("templates/tf_exchange is not among the examples")
    folder = _copy(tmp_path, "templates/tf_exchange/" + config)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "nrp"), "run", str(folder), "-c", config],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1.00 / 1.00 s simulated" in result.stdout


def _run(config: str, tmp_path: Path, broker: BrokerProcess) -> str:
    folder = _copy(tmp_path, config)
    env = {**os.environ, "NRP_MQTT_BROKER_ADDRESS": broker.address}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "NRPCoreSim"), "-c", Path(config).name],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@ONE_BROKER
def test_async_grpc_engines_relay_protobuf_datapacks_over_mqtt(
    tmp_path: Path, mqtt_broker: BrokerProcess
) -> None:
    """tf_exchange_async's proto config: two ``async_python_grpc_engine.py`` processes; the graph's
    node relays engine 1's ``Dump.String`` clock to engine 2 as serialized DataPackMessages."""
    config = "event_loop_examples/tf_exchange_async/simulation_config_proto.json"
    if config not in CONFIGS:
        pytest.skip(f"{config} is not among the examples")
    output = _run(config, tmp_path, mqtt_broker)
    published = {int(t) for t in re.findall(r"DataPack 1 data is\s+(\d+)", output)}
    received = [int(t) for t in re.findall(r"Engine 2 received data is\s+(\d+)", output)]
    assert len(published) >= 5, output
    relayed = [t for t in received if t > 0]
    assert relayed and set(relayed) <= published, output
    assert relayed == sorted(relayed)


@ONE_BROKER
def test_mqtt_nodes_echo_protobuf_messages_and_datapacks(tmp_path: Path, mqtt_broker: BrokerProcess) -> None:
    """mqtt_simple, unmodified: its GazeboJoint and GazeboJointDataPack nodes publish to the topic
    they subscribe to, so from the second tick on they print what they sent one tick before."""
    config = "event_loop_examples/mqtt_simple/simulation_config.json"
    if config not in CONFIGS:
        pytest.skip(f"{config} is not among the examples")
    output = _run(config, tmp_path, mqtt_broker)
    assert "Message from mqtt proto: position: 10" in output
    assert "Message from mqtt proto datapack: - name: a\n- engine: b\n- data: position: 10" in output
