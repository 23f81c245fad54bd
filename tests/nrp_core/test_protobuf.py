"""Protobuf datapacks (``nrp_core.data.nrp_protobuf``) and ``python_grpc`` engines, in engine
processes and in-process, mixed with JSON engines, through functions, the client and trajectories."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nrp_protobuf import dump_pb2, enginetest_pb2, nrpgenericproto_pb2, wrappers_pb2

from nrp_core.client import NrpCore
from nrp_core.data import nrp_protobuf
from nrp_core.data.nrp_protobuf import (
    DumpString,
    DumpStringDataPack,
    EngineTestTestPayloadRawData,
    NrpGenericProtoArrayBoolDataPack,
    WrappersInt32ValueDataPack,
)
from nrp_core.datapacks import DataPackInterface
from tests.nrp_core.loop_helpers import FIXTURES

PROTO_EXCHANGE = FIXTURES / "proto_exchange"
IN_PROCESS_OVERRIDES = [
    f'EngineConfigs.{index}.EngineLaunchCommand={{"LaunchType":"InProcess"}}' for index in range(3)
]


def test_one_datapack_and_raw_data_class_per_message_named_as_nrp_core() -> None:
    for module in (dump_pb2, wrappers_pb2, nrpgenericproto_pb2, enginetest_pb2):
        package = module.DESCRIPTOR.package
        for message in module.DESCRIPTOR.message_types_by_name:
            datapack_class = getattr(nrp_protobuf, f"{package}{message}DataPack")
            assert datapack_class.message_class is getattr(module, message)
            raw_class = getattr(nrp_protobuf, f"{package}{message}RawData")
            assert raw_class.message_class is getattr(module, message)
            assert getattr(nrp_protobuf, f"{package}{message}") is getattr(module, message)
    gazebo_and_edlut = ("GazeboJointDataPack", "GazeboModelDataPack", "EdlutDataSpikesDataPack")
    for name in gazebo_and_edlut:
        assert issubclass(getattr(nrp_protobuf, name), DataPackInterface)
    assert "DumpStringDataPack" in nrp_protobuf.__all__
    assert DumpString is dump_pb2.String


def test_datapack_api() -> None:
    datapack = DumpStringDataPack("label", "engine")
    assert (datapack.name, datapack.engine_name, datapack.type) == ("label", "engine", "Dump.String")
    assert DumpStringDataPack.getType() == "Dump.String"
    assert not datapack.isEmpty() and datapack.isUpdated()
    assert datapack.data == dump_pb2.String()
    datapack.data.string_stream = "x"
    clone = copy.deepcopy(datapack)
    clone.data.string_stream = "y"
    assert datapack.data.string_stream == "x"
    assert datapack.id.key == ("label", "engine")
    flags = NrpGenericProtoArrayBoolDataPack("flags", "engine")
    flags.data.array.extend([True, False])
    assert list(flags.data.array) == [True, False]
    with pytest.raises(TypeError, match="Dump.String"):
        datapack.data = wrappers_pb2.Int32Value()
    raw = EngineTestTestPayloadRawData()
    raw.data.integer = 3
    assert raw.data.integer == 3 and not raw.isEmpty()
    restored = nrp_protobuf.datapack_from_bytes("n", "e", "Wrappers.Int32Value", b"\x08\x05")
    assert isinstance(restored, WrappersInt32ValueDataPack) and restored.data.value == 5
    with pytest.raises(KeyError, match="not a message of the NRP protobuf packages"):
        nrp_protobuf.message_class_for("Nope.Message")


def _client(folder: Path, overrides: list[str] | None = None) -> NrpCore:
    return NrpCore("localhost:0", experiment_folder=str(folder), log_output=None, overrides=overrides or [])


@pytest.mark.parametrize("overrides", [[], IN_PROCESS_OVERRIDES], ids=["processes", "in-process"])
def test_protobuf_and_json_datapacks_flow_through_engines_functions_and_client(overrides) -> None:
    client = _client(PROTO_EXCHANGE, overrides)
    try:
        initial = client.initialize()
        assert initial[1] == dump_pb2.String(string_stream="start")
        assert initial[3] == {"value": -1}
        client.set_proto_datapack("command", "receiver", dump_pb2.String(string_stream="go"))
        done, trajectory = client.run_loop(4)
        assert done
        observations, texts = trajectory[0::2], trajectory[1::2]
        assert all(isinstance(item, enginetest_pb2.TestPayload) for item in observations)
        assert [item.str for item in observations] == ["", "", "go", "go"]
        assert [text["label"] for text in texts] == ["start", "t=10000000", "t=20000000", "t=30000000"]
        # the TF forwards the proto count to the JSON engine too
        assert [text["json_count"] for text in texts] == [-1, 0, 0, 2]
        client.reset()
        client.set_proto_datapack("command", "receiver", dump_pb2.String(string_stream="again"))
        done, trajectory = client.run_loop(8)
        assert not done  # iteration 3 lies before the reset
    finally:
        client.shutdown()


def test_set_proto_datapack_rejects_non_messages() -> None:
    client = _client(PROTO_EXCHANGE)
    with pytest.raises(TypeError, match="protobuf message"):
        client.set_proto_datapack("command", "receiver", {"string_stream": "go"})


def _copy(tmp_path: Path, packages: list[str] | None = None) -> Path:
    folder = tmp_path / "proto_exchange"
    shutil.copytree(PROTO_EXCHANGE, folder)
    if packages is not None:
        config_file = folder / "simulation_config.json"
        config = json.loads(config_file.read_text())
        config["EngineConfigs"][0]["ProtobufPackages"] = packages
        config_file.write_text(json.dumps(config))
    return folder


def test_unknown_protobuf_package_fails_at_initialize(tmp_path: Path) -> None:
    client = _client(_copy(tmp_path, ["Dump", "Nope"]))
    try:
        with pytest.raises(RuntimeError, match=r"ProtobufPackages \['Nope'\] not supported"):
            client.initialize()
    finally:
        client.shutdown()


def test_message_of_a_package_not_listed_fails(tmp_path: Path) -> None:
    client = _client(_copy(tmp_path, ["Wrappers"]))
    try:
        with pytest.raises(RuntimeError, match=r"Dump.String message.*not in the engine's ProtobufPackages"):
            client.initialize()
    finally:
        client.shutdown()


def test_json_datapack_sent_to_a_grpc_engine_fails_with_its_name(tmp_path: Path) -> None:
    client = _client(PROTO_EXCHANGE)
    try:
        client.initialize()
        client.set_json_datapack("command", "receiver", {"string_stream": "go"})
        with pytest.raises(RuntimeError, match="'command' is not a protobuf datapack"):
            client.run_loop(1)
    finally:
        client.shutdown()


def test_wrong_message_type_fails_with_engine_and_datapack(tmp_path: Path) -> None:
    client = _client(PROTO_EXCHANGE)
    try:
        client.initialize()
        client.set_proto_datapack("command", "receiver", wrappers_pb2.Int32Value(value=1))
        with pytest.raises(RuntimeError, match=r"DataPack \(command\) is of type Dump.String"):
            client.run_loop(1)
    finally:
        client.shutdown()


def test_grpc_script_errors_name_the_users_file_and_line(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "receiver.py").write_text(
        "from nrp_core.engines.python_grpc import GrpcEngineScript\n"
        "from nrp_protobuf import dump_pb2\n\n\n"
        "class Script(GrpcEngineScript):\n"
        "    def initialize(self):\n"
        "        self._registerDataPack('command', dump_pb2.String)\n"
        "        self._setDataPack('command', 3)\n"
    )
    client = _client(folder)
    try:
        expected = r"receiver\.py:8.*TypeError.*registered with type Dump.String"
        with pytest.raises(RuntimeError, match=expected):
            client.initialize()
    finally:
        client.shutdown()


def test_runtime_errors_form_one_hierarchy_and_keep_their_old_homes() -> None:
    from nrp_core import client, config, datapacks, errors, functions
    from nrp_core.engines import launch

    homes = {
        "ConfigError": (config, ValueError),
        "EmptyDataPackError": (datapacks, RuntimeError),
        "EngineError": (launch, RuntimeError),
        "FunctionError": (functions, RuntimeError),
        "FunctionLoadError": (functions, Exception),
        "NrpCoreStateError": (client, ConnectionError),
    }
    for name, (module, builtin) in homes.items():
        error = getattr(errors, name)
        assert getattr(module, name) is error
        assert issubclass(error, errors.NrpCoreError) and issubclass(error, builtin)


@pytest.fixture
def remote_engines(tmp_path: Path):
    """The proto_exchange folder and two ``EngineGrpcService`` servers started in it on free ports."""
    folder = _copy(tmp_path)
    servers = []
    try:
        for _ in range(2):
            proc = subprocess.Popen(
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
            servers.append(proc)
        addresses = []
        for proc in servers:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("Listening on grpc://"), line
            addresses.append(line.strip().removeprefix("Listening on grpc://"))
        yield folder, addresses, servers
    finally:
        for proc in servers:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_empty_launch_command_reaches_grpc_engine_servers_running_elsewhere(remote_engines) -> None:
    folder, addresses, servers = remote_engines
    overrides = []
    for index, address in enumerate(addresses):
        overrides += [
            f'EngineConfigs.{index}.EngineLaunchCommand={{"LaunchType":"EmptyLaunchCommand"}}',
            f"EngineConfigs.{index}.ServerAddress={address}",
        ]
    client = _client(folder, overrides)
    try:
        initial = client.initialize()
        assert initial[1] == dump_pb2.String(string_stream="start")
        client.set_proto_datapack("command", "receiver", dump_pb2.String(string_stream="go"))
        done, trajectory = client.run_loop(4)
        assert done
        assert [item.str for item in trajectory[0::2]] == ["", "", "go", "go"]
        assert [text["json_count"] for text in trajectory[1::2]] == [-1, 0, 0, 2]
        client.set_proto_datapack("command", "receiver", wrappers_pb2.Int32Value(value=1))
        with pytest.raises(RuntimeError, match=r"receiver.*DataPack \(command\) is of type Dump.String"):
            client.run_loop(1)
    finally:
        client.shutdown()
    # shutdown ends the servers
    for proc in servers:
        assert proc.wait(60) == 0


def test_unreachable_grpc_engine_fails_with_its_address(tmp_path: Path) -> None:
    import socket

    with socket.socket() as bound:  # bound, never listening: nothing answers there
        bound.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{bound.getsockname()[1]}"
        overrides = [
            'EngineConfigs.0.EngineLaunchCommand={"LaunchType":"EmptyLaunchCommand"}',
            f"EngineConfigs.0.ServerAddress={address}",
        ]
        from nrp_core.engines.grpc import GrpcEngine

        GrpcEngine.READY_TIMEOUT_S, saved = 1.0, GrpcEngine.READY_TIMEOUT_S
        client = _client(_copy(tmp_path), overrides)
        try:
            with pytest.raises(RuntimeError, match=f"no engine server answers at {address}"):
                client.initialize()
        finally:
            GrpcEngine.READY_TIMEOUT_S = saved
            client.shutdown()


def test_protobuf_datapack_sent_to_a_json_engine_fails_with_its_type(tmp_path: Path) -> None:
    client = _client(PROTO_EXCHANGE)
    try:
        client.initialize()
        client.set_proto_datapack("count", "json", wrappers_pb2.Int32Value(value=1))
        with pytest.raises(RuntimeError, match=r"'count' is a protobuf datapack \(Wrappers.Int32Value\)"):
            client.run_loop(1)
    finally:
        client.shutdown()


def test_preprocessing_functions_and_pass_by_value_handle_protobuf_datapacks(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "double.py").write_text(
        "from nrp_core import *\n"
        "from nrp_core.data.nrp_protobuf import WrappersInt32ValueDataPack\n\n\n"
        '@EngineDataPack(keyword="count", id=DataPackIdentifier("count", "counter"))\n'
        '@PreprocessingFunction("counter")\n'
        "def double(count):\n"
        '    doubled = WrappersInt32ValueDataPack("doubled", "counter")\n'
        "    doubled.data.value = 2 * count.data.value\n"
        "    count.data.value = -100  # a copy: the engine pool keeps its value\n"
        "    return [doubled]\n"
    )
    (folder / "status.py").write_text(
        "from nrp_core import *\n\n\n"
        '@PreprocessedDataPack(keyword="doubled", id=DataPackIdentifier("doubled", "counter"))\n'
        '@EngineDataPack(keyword="count", id=DataPackIdentifier("count", "counter"))\n'
        "@StatusFunction()\n"
        "def status(doubled, count):\n"
        "    return False, [{'doubled': doubled.data.value, 'count': count.data.value}]\n"
    )
    config_file = folder / "simulation_config.json"
    config = json.loads(config_file.read_text())
    config["DataPackProcessingFunctions"].append({"Name": "double", "FileName": "double.py"})
    config["FunctionArgumentsPassingMethod"] = "value"
    config_file.write_text(json.dumps(config))
    client = _client(folder)
    try:
        client.initialize()
        client.run_loop(3)
        _done, _timeout, trajectory = client.run_until_timeout()
    finally:
        client.shutdown()
    # the trajectory holds every status since initialize (no done flag delivered it before)
    assert trajectory[:4] == [{"doubled": 2 * step, "count": step} for step in range(4)]
