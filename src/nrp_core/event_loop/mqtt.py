"""MQTT nodes: ``@MQTTSubscriber`` and ``@MQTTPublisher``, and the graph's MQTT connection.

An experiment with an ``MQTTNode`` config entry gets one MQTT client (:class:`MQTTConnection`);
``@MQTTSubscriber(keyword, address, type)`` creates the input node ``<address>_input`` subscribed to
topic ``address``, ``@MQTTPublisher(keyword, address, type)`` the output node ``<address>_output``
publishing to it. Payload types, as nrp-core's: ``str`` (the payload text), ``NlohmannJson`` (the
payload parsed as JSON) and ``JsonDataPack`` (``{"name", "engine_name", "type", "data"}``, the
format async engines use), a protobuf message class of the NRP packages (the serialized message) and a
protobuf datapack class (a serialized ``EngineGrpc.DataPackMessage``, as async ``python_grpc``
engines exchange them).

The broker is ``MQTTNode.MQTTBroker`` if given, else ``NRP_MQTT_BROKER_ADDRESS`` (the broker the
Simulation Server is given), else ``localhost:1883`` (the embedded broker of ``nrp up``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE, JsonDataPack, NlohmannJson
from nrp_core.event_loop.graph import GraphError, InputNode, OutputNode, Where, _PortHandle, caller
from nrp_core.event_loop.nodes import _InputEdge, _OutputEdge
from nrp_core.event_loop.policies import node_policies

__all__ = [
    "DEFAULT_BROKER",
    "InputMQTTNode",
    "MQTTConnection",
    "MQTTPublisher",
    "MQTTSubscriber",
    "OutputMQTTNode",
    "broker_address",
    "client_id",
    "split_address",
]

logger = logging.getLogger("nrp_core.event_loop")

DEFAULT_BROKER = "localhost:1883"
BROKER_ENV = "NRP_MQTT_BROKER_ADDRESS"
DEFAULT_CLIENT_NAME = "NRP-core-client"


def broker_address(configured: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The broker to use: the configured one, else ``NRP_MQTT_BROKER_ADDRESS``, else localhost:1883."""
    if configured:
        return configured
    environ = os.environ if environ is None else environ
    return environ.get(BROKER_ENV) or DEFAULT_BROKER


def client_id(configured: str | None, default: str) -> str:
    """The MQTT client id: the configured ``ClientName``, else ``default`` plus this process's id.

    A broker disconnects a client when another connects with the same id: the defaults (nrp-core's
    ``NRP-core-client``, an async engine's name) get the process id so that two simulations
    sharing ``nrp up``'s broker do not throw each other off.
    """
    if configured and configured != DEFAULT_CLIENT_NAME:
        return configured
    return f"{configured or default}-{os.getpid()}"


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (also ``tcp://host:port``; port 1883 if absent) -> ``(host, port)``."""
    text = address.split("://", 1)[-1].strip().rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep:
        return text or "localhost", 1883
    try:
        return host or "localhost", int(port)
    except ValueError:
        raise ValueError(f"invalid MQTT broker address {address!r}: expected host:port") from None


class MQTTConnection:
    """A paho client connected to the broker, with per-topic callbacks (re-subscribed on reconnect).

    Args:
        address: ``host:port`` of the broker.
        client_name: the MQTT client id.
        timeout: how long :meth:`connect` waits for the broker to accept the connection.
    """

    def __init__(self, address: str, client_name: str, timeout: float = 10.0) -> None:
        import paho.mqtt.client as mqtt

        self.address = address
        self.host, self.port = split_address(address)
        self.timeout = timeout
        self._callbacks: dict[str, list[Callable[[bytes], None]]] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_name)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def connect(self) -> None:
        """Connect and start the network thread; raises ``ConnectionError`` if the broker does not answer."""
        try:
            self._client.connect(self.host, self.port)
        except OSError as exc:
            raise ConnectionError(
                f"cannot connect to the MQTT broker at {self.address}: {exc}; start one (nrp up does) or set "
                f"MQTTNode.MQTTBroker or {BROKER_ENV}"
            ) from exc
        self._client.loop_start()
        if not self._connected.wait(self.timeout):
            self.close()
            raise ConnectionError(f"the MQTT broker at {self.address} did not accept the connection")
        logger.info("connected to the MQTT broker at %s", self.address)

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            logger.warning("MQTT connection to %s refused: %s", self.address, reason)
            return
        with self._lock:
            topics = list(self._callbacks)
        for topic in topics:
            client.subscribe(topic, 1)
        self._connected.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self._connected.clear()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        with self._lock:
            callbacks = list(self._callbacks.get(message.topic, ()))
        for callback in callbacks:
            try:
                callback(message.payload)
            except Exception as exc:  # a bad message must not stop the network thread
                logger.warning("MQTT message on '%s' dropped: %s", message.topic, exc)

    def subscribe(self, topic: str, callback: Callable[[bytes], None]) -> None:
        with self._lock:
            first = topic not in self._callbacks
            self._callbacks.setdefault(topic, []).append(callback)
        if first and self._connected.is_set():
            self._client.subscribe(topic, 1)

    def publish(self, topic: str, payload: str | bytes) -> None:
        self._client.publish(topic, payload, qos=1)

    def close(self) -> None:
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()


# --------------------------------------------------------------------------------------------------
# Payload conversion


def _check_type(msg_type: Any, where: Where) -> str:
    if msg_type is str:
        return "str"
    if msg_type is NlohmannJson:
        return "json"
    if msg_type is JsonDataPack:
        return "json_datapack"
    from google.protobuf.message import Message

    from nrp_core.data.nrp_protobuf import ProtobufDataPack

    if isinstance(msg_type, type) and issubclass(msg_type, ProtobufDataPack) and msg_type.type_name:
        return f"proto_datapack:{msg_type.type_name}"
    if isinstance(msg_type, type) and issubclass(msg_type, Message):
        descriptor: Any = getattr(msg_type, "DESCRIPTOR")  # noqa: B009 - not typed on Message
        return f"proto:{descriptor.full_name}"
    name = getattr(msg_type, "__name__", repr(msg_type))
    raise GraphError(
        f"MQTT payload type '{name}' is not supported (supported: str, NlohmannJson, JsonDataPack, "
        "the protobuf messages of the NRP packages and their datapacks)",
        where,
    )


def _from_proto_payload(kind: str, payload: bytes) -> Any:
    from nrp_protobuf.engine_grpc_pb2 import DataPackMessage

    from nrp_core.data.nrp_protobuf import datapack_from_bytes, message_class_for

    form, _, type_name = kind.partition(":")
    if form == "proto":
        return message_class_for(type_name).FromString(payload)
    message = DataPackMessage.FromString(payload)
    identifier = message.dataPackId
    if not message.HasField("data"):
        raise ValueError("empty datapack received: this is not allowed")
    received = message.data.type_url.rpartition("/")[2]
    if received != type_name:
        raise ValueError(f"datapack '{identifier.dataPackName}' holds a {received}, not a {type_name}")
    return datapack_from_bytes(identifier.dataPackName, identifier.engineName, type_name, message.data.value)


def _to_proto_payload(kind: str, value: Any, node_id: str) -> bytes | None:
    from nrp_protobuf.engine_grpc_pb2 import DataPackMessage

    from nrp_core.data.nrp_protobuf import ProtobufDataPack, message_class_for

    form, _, type_name = kind.partition(":")
    if form == "proto":
        if not isinstance(value, message_class_for(type_name)):
            raise TypeError(f"MQTT output node '{node_id}' publishes {type_name}, got {type(value).__name__}")
        payload: bytes = value.SerializeToString()
        return payload
    if not isinstance(value, ProtobufDataPack) or value.type != type_name:
        raise TypeError(
            f"MQTT output node '{node_id}' publishes {type_name} datapacks, got {type(value).__name__}"
        )
    message = DataPackMessage()
    message.dataPackId.dataPackName = value.name
    message.dataPackId.engineName = value.engine_name
    message.dataPackId.dataPackType = type_name
    message.data.Pack(value.data)
    packed: bytes = message.SerializeToString()
    return packed


def _from_payload(kind: str, payload: bytes) -> Any:
    if kind.startswith("proto"):
        return _from_proto_payload(kind, payload)
    text = payload.decode("utf-8")
    if kind == "str":
        return text
    value = json.loads(text)
    if kind == "json":
        return NlohmannJson(value)
    if not isinstance(value, dict) or "name" not in value or "engine_name" not in value:
        raise ValueError(
            f"malformed json datapack received: {text!r}; it must contain keys name and engine_name"
        )
    if "data" not in value:
        raise ValueError("empty datapack received: this is not allowed")
    return JsonDataPack.from_json(value["name"], value["engine_name"], value["data"])


def _to_payload(kind: str, value: Any, node_id: str) -> str | bytes | None:
    if kind.startswith("proto"):
        return _to_proto_payload(kind, value, node_id)
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError(f"MQTT output node '{node_id}' publishes str, got {type(value).__name__}")
        return value
    if kind == "json":
        data = value.to_json() if isinstance(value, NlohmannJson) else value
        return json.dumps(data)
    if not isinstance(value, JsonDataPack):
        raise TypeError(f"MQTT output node '{node_id}' publishes JsonDataPack, got {type(value).__name__}")
    if value.isEmpty():
        logger.warning('From OutputMQTTNode "%s": received an empty datapack', node_id)
        return None
    return json.dumps(
        {
            "name": value.name,
            "engine_name": value.engine_name,
            "type": JSON_DATAPACK_TYPE,
            "data": value.to_json(),
        }
    )


# --------------------------------------------------------------------------------------------------
# Nodes


class InputMQTTNode(InputNode):
    """``<topic>_input``: publishes the messages received on ``topic`` since the previous cycle."""

    type_name = "MQTTSubscriber"

    def __init__(self, node_id: str, topic: str, kind: str, where: Where | None = None) -> None:
        super().__init__(node_id, where=where)
        self.topic = topic
        self.payload_kind = kind
        self._lock = threading.Lock()
        self._temp: list[Any] = []
        self.connection: MQTTConnection | None = None

    def attach(self, connection: MQTTConnection | None) -> None:
        self.connection = connection
        if connection is None:
            logger.warning(
                'InputMQTTNode "%s": not connected to MQTT (no MQTTNode in the configuration); '
                "this node receives nothing",
                self.id,
            )
            return
        connection.subscribe(self.topic, self.receive)

    def receive(self, payload: bytes) -> None:
        message = _from_payload(self.payload_kind, payload)
        with self._lock:
            if len(self._temp) < self.queue_size:
                self._temp.append(message)
            else:
                logger.debug("'%s' node capacity is full: dropping message", self.id)

    def update_port_data(self, port_id: str, handle: _PortHandle) -> bool:
        with self._lock:
            if not self._temp:
                return False
            handle.data[:] = self._temp
            self._temp = []
        return True


class OutputMQTTNode(OutputNode):
    """``<topic>_output``: publishes the messages it receives to ``topic``."""

    type_name = "MQTTPublisher"

    def __init__(
        self,
        node_id: str,
        topic: str,
        kind: str,
        publish_from_cache: bool = False,
        compute_period: int = 1,
        where: Where | None = None,
    ) -> None:
        super().__init__(node_id, publish_from_cache, 0, compute_period, where)
        self.topic = topic
        self.payload_kind = kind
        self.connection: MQTTConnection | None = None

    def attach(self, connection: MQTTConnection | None) -> None:
        self.connection = connection
        if connection is None:
            logger.warning(
                'OutputMQTTNode "%s": not connected to MQTT (no MQTTNode in the configuration); '
                "this node publishes nothing",
                self.id,
            )

    def send_single(self, port_id: str, value: Any) -> None:
        payload = _to_payload(self.payload_kind, value, self.id)
        if payload is not None and self.connection is not None:
            self.connection.publish(self.topic, payload)


class MQTTSubscriber(_InputEdge):
    """``@MQTTSubscriber(keyword, address, type, publish_policy=last, cache_policy=keep)``."""

    decorator = "MQTTSubscriber"

    def __init__(
        self,
        keyword: str,
        address: str,
        type: Any,
        publish_policy: Any = node_policies.input_node.msg_publish.last,
        cache_policy: Any = node_policies.input_node.msg_cache.keep,
    ) -> None:
        where = caller()
        self.payload_kind = _check_type(type, where)
        super().__init__(keyword, f"{address}_input", address, publish_policy, cache_policy)
        self.topic = address
        self.where = where

    def make_node(self) -> InputNode:
        return InputMQTTNode(self.node_id, self.topic, self.payload_kind, self.where)


class MQTTPublisher(_OutputEdge):
    """``@MQTTPublisher(keyword, address, type, publish_from_cache=False, compute_period=1)``."""

    decorator = "MQTTPublisher"

    def __init__(
        self, keyword: str, address: str, type: Any, publish_from_cache: bool = False, compute_period: int = 1
    ) -> None:
        where = caller()
        self.payload_kind = _check_type(type, where)
        super().__init__(keyword, f"{address}_output", address, publish_from_cache, compute_period)
        self.topic = address
        self.where = where

    def make_node(self) -> OutputNode:
        return OutputMQTTNode(
            self.node_id,
            self.topic,
            self.payload_kind,
            self.publish_from_cache,
            self.compute_period,
            self.where,
        )
