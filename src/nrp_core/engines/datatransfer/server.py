"""The ``datatransfer_grpc_engine`` stand-in: stream and record JSON and protobuf datapacks.

Functions send datapacks to this engine like to any other; each one named in ``dumps`` is

- with ``"network": true``, published on ``[MQTTPrefix/]nrp_simulation/<simulationID>/data/<name>``:
  JSON datapacks as JSON text; protobuf datapacks, as nrp-core does, as the serialized
  ``EngineGrpc.DataPackMessage`` (``"streamDataPackMessage": true``) or the serialized message itself,
  the payload's protobuf type name being published (retained) on ``.../data/<name>/type`` with the
  first one. The list of data topics, ``[{"topic", "type"}]`` (``type``: ``"json"``, the default until
  a protobuf datapack arrives, or the protobuf type name of the payload), goes to ``.../data``
  whenever the MQTT connection is (re)established and whenever a topic's type changes;
- with ``"file": true``, recorded in ``<dataDirectory>/<run timestamp>/<name>.data`` (relative to
  the experiment directory): JSON datapacks as one JSON line ``{"time_ns": <engine time>, "data":
  <data>}`` each; protobuf datapacks as nrp-core writes them, one line ``<time s>,<string_stream>`` per
  ``Dump.String``, ``<time s>,0,<values...>`` per ``Dump.ArrayFloat`` (one line per row, prefixed by
  the row index, for 2-d arrays), and for other messages a header ``sim_time,<field names>`` then
  ``<time s>,<field values>`` lines.

Without a reachable broker the engine keeps running and only logs. Datapacks not named in ``dumps``
are accepted and dropped with one warning each.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import IO, Any

from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE
from nrp_core.engines import experiment_path

__all__ = ["DataTransferServer", "data_topic", "make_server"]

logger = logging.getLogger(__name__)


def data_topic(prefix: str | None, simulation_id: str, name: str | None = None) -> str:
    """``[prefix/]nrp_simulation/<id>/data[/<name>]``: beside the simulation's other MQTT topics."""
    topic = f"nrp_simulation/{simulation_id}/data"
    if prefix:
        topic = f"{prefix}/{topic}"
    return f"{topic}/{name}" if name else topic


class DataTransferServer:
    """Engine server of the datatransfer stand-in.

    It serves ``initialize``, ``run_loop``, ``set_datapacks``, ``get_datapacks``, ``reset`` and ``shutdown``,
    like every engine server.
    """

    def __init__(self) -> None:
        self._name = "datatransfer_engine"
        self._time_ns = 0
        self._network: set[str] = set()
        self._file: set[str] = set()
        self._files: dict[str, IO[str]] = {}
        self._directory: Path | None = None
        self._last: dict[str, Any] = {}
        self._ignored: set[str] = set()
        self._mqtt: Any = None
        self._prefix = ""
        self._simulation_id = "0"
        self._stream_message = False
        self._types: dict[str, str] = {}  # name -> payload type published on its topic

    @property
    def data_directory(self) -> Path | None:
        """The folder this run's files go to (None when no dump has ``file`` set)."""
        return self._directory

    def initialize(self, request: dict[str, Any]) -> None:
        """Read ``dumps`` and connect to the broker when any dump streams to the network."""
        self._name = str(request.get("EngineName", self._name))
        self._prefix = str(request.get("MQTTPrefix") or "")
        self._simulation_id = str(request.get("simulationID", "0"))
        self._stream_message = bool(request.get("streamDataPackMessage", False))
        for dump in request.get("dumps") or []:
            name = dump.get("name") if isinstance(dump, dict) else None
            if not name:
                raise ValueError(
                    f"datatransfer engine '{self._name}': a dumps entry needs a 'name': {dump!r}"
                )
            if dump.get("network", False):
                self._network.add(name)
            if dump.get("file", False):
                self._file.add(name)
        if self._file:
            base = experiment_path(request, str(request.get("dataDirectory") or "data"))
            self._directory = base / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())  # ISO 8601, UTC
            self._directory.mkdir(parents=True, exist_ok=True)
        if self._network:
            self._connect(str(request.get("MQTTBroker") or "localhost:1883"))

    def _connect(self, broker: str) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            logger.warning(
                "datatransfer engine '%s': paho-mqtt is not installed; network dumps are off", self._name
            )
            return
        host, _, port = broker.rpartition(":")
        if not host:
            host, port = port, "1883"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"nrp_datatransfer_{self._simulation_id}_{self._name}"
        )

        def on_connect(client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
            if not reason.is_failure:
                self._announce(client)

        client.on_connect = on_connect
        password = os.environ.get("NRP_MQTT_PASSWORD", "")
        if password:  # the simulation's own MQTT identity: user name = its topic root
            client.username_pw_set(data_topic(self._prefix, self._simulation_id).rsplit("/", 1)[0], password)
        try:
            client.connect_async(host, int(port))
            client.loop_start()
        except (OSError, ValueError) as exc:
            logger.warning(
                "datatransfer engine '%s': cannot reach MQTT broker %s: %s", self._name, broker, exc
            )
        self._mqtt = client

    def _announce(self, client: Any) -> None:
        topics = [
            {
                "topic": data_topic(self._prefix, self._simulation_id, name),
                "type": self._types.get(name, "json"),
            }
            for name in sorted(self._network)
        ]
        client.publish(data_topic(self._prefix, self._simulation_id), json.dumps(topics), qos=0)

    def _payload(self, name: str, entry: dict[str, Any]) -> tuple[str, Any]:
        """``(type, payload)`` published for one datapack."""
        if "proto" not in entry:
            return "json", json.dumps(entry.get("data"))
        if not self._stream_message:
            return entry["type"], entry["proto"]
        from nrp_core.engines.grpc import datapack_messages

        message = datapack_messages({name: entry})[0]
        return message.DESCRIPTOR.full_name, message.SerializeToString()

    def run_loop(self, request: dict[str, Any]) -> dict[str, int]:
        self._time_ns += int(request["time_step"])
        return {"time": self._time_ns}

    def set_datapacks(self, request: dict[str, Any] | None) -> None:
        """Stream and record each datapack named in ``dumps``."""
        if not request:
            return
        written = False
        for name, entry in request.items():
            if not isinstance(entry, dict) or ("data" not in entry and "proto" not in entry):
                raise ValueError(
                    f"Malformed DataPack. Expected keys: 'data', 'engine_name', 'type'; got {entry!r}"
                )
            streamed = False
            text = None  # the datapack as JSON, made once for the broker and the file
            if name in self._network and self._mqtt is not None:
                if self._mqtt.is_connected():  # nothing to encode while no broker is reachable
                    topic = data_topic(self._prefix, self._simulation_id, name)
                    kind, payload = self._payload(name, entry)
                    if kind == "json":
                        text = payload
                    if self._types.get(name, "json") != kind:
                        self._types[name] = kind
                        if kind != "json":
                            self._mqtt.publish(f"{topic}/type", kind, qos=0, retain=True)
                        self._announce(self._mqtt)
                    self._mqtt.publish(topic, payload, qos=0)
                streamed = True
            if name in self._file:
                if "proto" in entry:
                    self._write_proto(name, entry)
                else:
                    self._write(name, entry["data"], text)
                streamed = written = True
            if streamed or name in self._network:
                self._last[name] = entry
            elif name not in self._ignored:
                self._ignored.add(name)
                logger.warning(
                    "datatransfer engine '%s': DataPack '%s' is not in dumps; dropped", self._name, name
                )
        if written:
            # One flush per step: what a step recorded is on disk before the next step starts.
            self._flush()

    def _write(self, name: str, data: Any, text: str | None = None) -> None:
        handle = self._files.get(name)
        if handle is None:
            assert self._directory is not None
            handle = open(self._directory / f"{name}.data", "a", encoding="utf-8")  # noqa: SIM115
            self._files[name] = handle
        if text is None:
            text = json.dumps(data, separators=(",", ":"))
        handle.write(f'{{"time_ns":{self._time_ns},"data":{text}}}\n')

    def _write_proto(self, name: str, entry: dict[str, Any]) -> None:
        from nrp_core.data.nrp_protobuf import message_class_for

        message = message_class_for(entry["type"]).FromString(entry["proto"])
        handle = self._files.get(name)
        if handle is None:
            assert self._directory is not None
            handle = open(self._directory / f"{name}.data", "a", encoding="utf-8")  # noqa: SIM115
            self._files[name] = handle
            if entry["type"] not in ("Dump.String", "Dump.ArrayFloat"):
                fields = ",".join(field.name for field in message.DESCRIPTOR.fields)
                handle.write(f"sim_time,{fields}\n")
        handle.write(_proto_line(self._time_ns / 1e9, entry["type"], message))
        handle.write("\n")

    def get_datapacks(self, request: dict[str, Any] | None) -> dict[str, Any]:
        """The last datapack received under each requested name (JSON null if none yet)."""
        if not request:
            return {}
        reply = {}
        for name in request:
            if name not in self._network and name not in self._file:
                raise ValueError(f"Attempting to get data from an unregistered DataPack ({name})")
            last = self._last.get(name)
            if last is not None and "proto" in last:
                reply[name] = {"engine_name": self._name, "type": last["type"], "proto": last["proto"]}
            else:
                data = last.get("data") if last is not None else None
                reply[name] = {"engine_name": self._name, "type": JSON_DATAPACK_TYPE, "data": data}
        return reply

    def reset(self, request: Any = None) -> None:
        """Restart the engine clock; recordings continue in the same files."""
        self._time_ns = 0
        self._flush()

    def _flush(self) -> None:
        for handle in self._files.values():
            handle.flush()

    def shutdown(self, request: Any = None) -> None:
        """Close the files and the MQTT connection."""
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        client, self._mqtt = self._mqtt, None
        if client is not None:
            client.loop_stop()
            client.disconnect()


def _field_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:f}"
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (str, int)):
        return str(value)
    try:
        return " ".join(_field_text(item) for item in value)  # repeated fields
    except TypeError:
        return str(value).replace("\n", " ").strip()


def _proto_line(seconds: float, type_name: str, message: Any) -> str:
    """One record of a protobuf datapack in nrp-core's file formats."""
    time_text = f"{seconds:f}"
    if type_name == "Dump.String":
        return f"{time_text},{message.string_stream}"
    if type_name == "Dump.ArrayFloat":
        values = list(message.float_stream)
        dims = list(message.dims)
        if len(dims) != 2:
            return ",".join([time_text, "0", *(f"{value:f}" for value in values)])
        rows, columns = dims
        lines = [time_text + ","]
        for row in range(rows):
            chunk = values[row * columns : (row + 1) * columns]
            lines.append(",".join([str(row), *(f"{value:f}" for value in chunk)]))
        return "\n".join(lines)
    fields = [_field_text(getattr(message, field.name)) for field in message.DESCRIPTOR.fields]
    return ",".join([time_text, *fields])


def make_server() -> DataTransferServer:
    """A fresh :class:`DataTransferServer` (the in-process server factory)."""
    return DataTransferServer()
