"""The datatransfer stand-in with protobuf datapacks: nrp-core's file formats and MQTT payloads."""

from __future__ import annotations

import json
import queue
import time

import paho.mqtt.client as mqtt

from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE
from nrp_core.engines.datatransfer import DataTransferServer


def entry(data):
    return {"engine_name": "datatransfer_engine", "type": JSON_DATAPACK_TYPE, "data": data}


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
