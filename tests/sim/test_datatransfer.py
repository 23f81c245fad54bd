"""The datatransfer stand-in (contract 12): JSON lines files and MQTT data topics."""

from __future__ import annotations

import json
import queue
import time

import paho.mqtt.client as mqtt

from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE
from nrp_core.engines.datatransfer import DataTransferServer, data_topic


def entry(data):
    return {"engine_name": "datatransfer_engine", "type": JSON_DATAPACK_TYPE, "data": data}


def test_data_topics():
    assert data_topic("", "3") == "nrp_simulation/3/data"
    assert data_topic("pre", "3", "dp") == "pre/nrp_simulation/3/data/dp"


def test_file_dumps_are_json_lines_per_run(tmp_path, caplog):
    server = DataTransferServer()
    server.initialize(
        {
            "EngineName": "datatransfer_engine",
            "dataDirectory": str(tmp_path / "data"),
            "dumps": [{"name": "recorded", "file": True}, {"name": "streamed_only", "network": False}],
        }
    )
    server.set_datapacks({"recorded": entry({"x": 1}), "unknown": entry(1)})
    assert server.run_loop({"time_step": 20_000_000}) == {"time": 20_000_000}
    server.set_datapacks({"recorded": entry([1, 2])})
    folder = server.data_directory
    assert folder is not None and folder.parent == tmp_path / "data"
    lines = (folder / "recorded.data").read_text().splitlines()  # flushed every step
    assert [json.loads(line) for line in lines] == [
        {"time_ns": 0, "data": {"x": 1}},
        {"time_ns": 20_000_000, "data": [1, 2]},
    ]
    assert "'unknown' is not in dumps" in caplog.text
    request = {"recorded": {"engine_name": "datatransfer_engine", "type": JSON_DATAPACK_TYPE}}
    got = server.get_datapacks(request)
    assert got["recorded"]["data"] == [1, 2]
    server.reset()
    server.shutdown()


def test_network_dumps_are_published_on_data_topics(mqtt_broker):
    received: queue.Queue = queue.Queue()
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="datatransfer-test")
    subscriber.on_message = lambda _c, _u, message: received.put((message.topic, json.loads(message.payload)))
    subscriber.connect(mqtt_broker.host, mqtt_broker.port)
    subscriber.subscribe("pre/nrp_simulation/7/data/#")  # also matches .../data itself
    subscriber.loop_start()
    server = DataTransferServer()
    try:
        server.initialize(
            {
                "EngineName": "datatransfer_engine",
                "MQTTBroker": f"{mqtt_broker.host}:{mqtt_broker.port}",
                "MQTTPrefix": "pre",
                "simulationID": "7",
                "dumps": [{"name": "position", "network": True}],
            }
        )
        topic, announcement = received.get(timeout=10)
        assert topic == "pre/nrp_simulation/7/data"
        assert announcement == [{"topic": "pre/nrp_simulation/7/data/position", "type": "json"}]
        deadline = time.monotonic() + 10
        while True:  # the first publications may precede the subscription's arrival at the broker
            server.set_datapacks({"position": entry({"x": 0.5})})
            try:
                topic, payload = received.get(timeout=0.2)
                if topic != "pre/nrp_simulation/7/data":  # a second announcement after a reconnect
                    break
            except queue.Empty:
                assert time.monotonic() < deadline, "no datapack published"
        assert (topic, payload) == ("pre/nrp_simulation/7/data/position", {"x": 0.5})
    finally:
        server.shutdown()
        subscriber.loop_stop()
        subscriber.disconnect()


def test_without_broker_the_engine_keeps_running(tmp_path):
    server = DataTransferServer()
    server.initialize(
        {
            "EngineName": "datatransfer_engine",
            "MQTTBroker": "127.0.0.1:9",  # nothing listens there
            "dumps": [{"name": "position", "network": True, "file": True}],
            "dataDirectory": str(tmp_path),
        }
    )
    server.set_datapacks({"position": entry({"x": 1})})
    server.run_loop({"time_step": 1})
    server.shutdown()
    assert len(list(tmp_path.glob("*/position.data"))) == 1


def proto_entry(message):
    return {
        "engine_name": "datatransfer_engine",
        "type": message.DESCRIPTOR.full_name,
        "proto": message.SerializeToString(),
    }


def test_protobuf_file_dumps_use_nrp_cores_formats(tmp_path):
    from nrp_protobuf import dump_pb2, wrappers_pb2

    server = DataTransferServer()
    server.initialize(
        {
            "EngineName": "datatransfer_engine",
            "dataDirectory": str(tmp_path),
            "dumps": [{"name": name, "file": True} for name in ("text", "flat", "grid", "number", "json")],
        }
    )
    server.run_loop({"time_step": 500_000_000})
    server.set_datapacks(
        {
            "text": proto_entry(dump_pb2.String(string_stream="hello")),
            "flat": proto_entry(dump_pb2.ArrayFloat(float_stream=[1, 2, 3], dims=[3])),
            "grid": proto_entry(dump_pb2.ArrayFloat(float_stream=[1, 2, 3, 4], dims=[2, 2])),
            "number": proto_entry(wrappers_pb2.Int32Value(value=7)),
            "json": entry({"x": 1}),
        }
    )
    folder = server.data_directory
    assert (folder / "text.data").read_text() == "0.500000,hello\n"
    assert (folder / "flat.data").read_text() == "0.500000,0,1.000000,2.000000,3.000000\n"
    assert (folder / "grid.data").read_text() == "0.500000,\n0,1.000000,2.000000\n1,3.000000,4.000000\n"
    assert (folder / "number.data").read_text() == "sim_time,value\n0.500000,7\n"
    assert json.loads((folder / "json.data").read_text()) == {"time_ns": 500_000_000, "data": {"x": 1}}
    got = server.get_datapacks({"number": {"engine_name": "datatransfer_engine"}})
    assert got["number"]["type"] == "Wrappers.Int32Value"
    assert wrappers_pb2.Int32Value.FromString(got["number"]["proto"]).value == 7
    server.shutdown()


def test_protobuf_network_dumps_stream_datapack_messages(mqtt_broker):
    from nrp_protobuf import dump_pb2, engine_grpc_pb2

    received: queue.Queue = queue.Queue()
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="datatransfer-proto-test")
    subscriber.on_message = lambda _c, _u, message: received.put((message.topic, message.payload))
    subscriber.connect(mqtt_broker.host, mqtt_broker.port)
    subscriber.subscribe("proto/nrp_simulation/8/data/#")
    subscriber.loop_start()
    server = DataTransferServer()
    try:
        server.initialize(
            {
                "EngineName": "datatransfer_engine",
                "MQTTBroker": f"{mqtt_broker.host}:{mqtt_broker.port}",
                "MQTTPrefix": "proto",
                "simulationID": "8",
                "streamDataPackMessage": True,
                "dumps": [{"name": "label", "network": True}],
            }
        )
        base = "proto/nrp_simulation/8/data"
        assert received.get(timeout=10) == (
            base,
            b'[{"topic": "' + base.encode() + b'/label", "type": "json"}]',
        )
        seen: dict[str, bytes] = {}
        deadline = time.monotonic() + 10
        while f"{base}/label" not in seen:  # the first publications may precede the subscription
            server.set_datapacks({"label": proto_entry(dump_pb2.String(string_stream="x"))})
            try:
                topic, payload = received.get(timeout=0.2)
                seen[topic] = payload
            except queue.Empty:
                assert time.monotonic() < deadline, "no datapack published"
        while f"{base}/label/type" not in seen or seen.get(base, b"").count(b"DataPackMessage") == 0:
            topic, payload = received.get(timeout=10)
            seen[topic] = payload
        message = engine_grpc_pb2.DataPackMessage.FromString(seen[f"{base}/label"])
        assert message.dataPackId.dataPackName == "label"
        text = dump_pb2.String()
        assert message.data.Unpack(text) and text.string_stream == "x"
        assert seen[f"{base}/label/type"] == b"EngineGrpc.DataPackMessage"
        assert json.loads(seen[base]) == [{"topic": f"{base}/label", "type": "EngineGrpc.DataPackMessage"}]
    finally:
        server.shutdown()
        subscriber.loop_stop()
        subscriber.disconnect()
