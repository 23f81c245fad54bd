"""The datatransfer stand-in: datapacks recorded to JSON lines files and published on MQTT data topics."""

from __future__ import annotations

import json
import queue

import paho.mqtt.client as mqtt

from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE
from nrp_core.engines.datatransfer import DataTransferServer, data_topic
from tests.helpers.waiting import HANG, wait_until


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
        topic, announcement = received.get(timeout=HANG)
        assert topic == "pre/nrp_simulation/7/data"
        assert announcement == [{"topic": "pre/nrp_simulation/7/data/position", "type": "json"}]

        def datapack() -> tuple[str, object] | None:
            # the first publications may precede the subscription's arrival at the broker
            server.set_datapacks({"position": entry({"x": 0.5})})
            try:
                message = received.get(timeout=0.2)
            except queue.Empty:
                return None
            # skip a second announcement after a reconnect
            return message if message[0] != "pre/nrp_simulation/7/data" else None

        topic, payload = wait_until(datapack, interval=0, message="a published datapack")
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
