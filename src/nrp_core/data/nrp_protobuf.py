"""Protobuf datapacks: one datapack and one raw-data class per message of the NRP protobuf packages.

The messages come from the NRP team's published bindings (the ``nrp-protobuf`` package:
``nrp_protobuf.dump_pb2``, ``wrappers_pb2``, ``nrpgenericproto_pb2``, ``enginetest_pb2``,
``gazebo_pb2``, ``edlutdata_pb2``). For a message ``<Message>`` of the protobuf package
``<Package>`` this module offers, as nrp-core names them:

- ``<Package><Message>``: the message class itself (``DumpString`` is ``dump_pb2.String``);
- ``<Package><Message>DataPack(name, engine_name)``: a datapack whose ``data`` is a new, empty
  message, mutated in place (``dp.data.string_stream = "x"``);
- ``<Package><Message>RawData()``: the message without identity, for status-function trajectories.

A protobuf datapack's type string is the message's full protobuf name (``"Dump.String"``). The
runtime moves protobuf datapacks between processes as serialized bytes (:func:`datapack_from_bytes`).
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from google.protobuf.message import Message

from nrp_core.datapacks import DataPackInterface

__all__ = [
    "PROTOBUF_MODULES",
    "ProtobufDataPack",
    "ProtobufRawData",
    "datapack_class_for",
    "datapack_from_bytes",
    "datapack_from_message",
    "message_class_for",
    "package_of",
    "protobuf_packages",
]

PROTOBUF_MODULES: tuple[str, ...] = (
    "nrp_protobuf.dump_pb2",
    "nrp_protobuf.edlutdata_pb2",
    "nrp_protobuf.gazebo_pb2",
    "nrp_protobuf.nrpgenericproto_pb2",
    "nrp_protobuf.enginetest_pb2",
    "nrp_protobuf.wrappers_pb2",
)
"""The modules of the NRP protobuf packages (nrp-core's ``ProtobufPackages`` values are their
protobuf package names: ``Dump``, ``EdlutData``, ``Gazebo``, ``NrpGenericProto``, ``EngineTest``,
``Wrappers``)."""


class ProtobufDataPack(DataPackInterface):
    """A datapack holding a protobuf message (``data``); subclasses fix the message class.

    Args:
        name: the datapack name.
        engine_name: the name of the engine the datapack belongs to.
        data: the message to hold (taken as is); default: a new, empty message.
    """

    __slots__ = ("_data",)
    message_class: ClassVar[type[Message]]
    type_name: ClassVar[str] = ""

    def __init__(self, name: str, engine_name: str, data: Message | None = None) -> None:
        super().__init__(name, engine_name, self.type_name)
        self._data: Message = self.message_class() if data is None else data

    @classmethod
    def getType(cls) -> str:
        """The full protobuf name of the message (``"Dump.String"``)."""
        return cls.type_name

    @property
    def data(self) -> Any:
        """The message itself (mutate it in place)."""
        return self._data

    @data.setter
    def data(self, value: Message) -> None:
        if not isinstance(value, self.message_class):
            raise TypeError(
                f"{type(self).__name__}.data takes a {self.type_name} message, got {type(value).__name__}"
            )
        self._data = value

    def isEmpty(self) -> bool:
        return False

    def to_bytes(self) -> bytes:
        """The serialized message."""
        return self._data.SerializeToString()

    def trajectory_value(self) -> Message:
        """What a client gets for this datapack in a trajectory: a copy of the message."""
        copy = self.message_class()
        copy.CopyFrom(self._data)
        return copy

    def _deep_copy(self) -> ProtobufDataPack:
        clone = type(self)(self._name, self._engine_name, self.trajectory_value())
        clone._updated = self._updated
        return clone

    def _data_text(self) -> str:
        return str(self._data).strip() or "{}"


class ProtobufRawData:
    """A protobuf message without datapack identity (status-function trajectories)."""

    __slots__ = ("_data",)
    message_class: ClassVar[type[Message]]
    type_name: ClassVar[str] = ""

    def __init__(self, data: Message | None = None) -> None:
        self._data: Message = self.message_class() if data is None else data

    @classmethod
    def getType(cls) -> str:
        """The full protobuf name of the message."""
        return cls.type_name

    @property
    def data(self) -> Any:
        """The message itself (mutate it in place)."""
        return self._data

    def isEmpty(self) -> bool:
        return False

    def trajectory_value(self) -> Message:
        """What a client gets for this item in a trajectory: a copy of the message."""
        copy = self.message_class()
        copy.CopyFrom(self._data)
        return copy

    def __str__(self) -> str:
        return str(self._data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._data).strip()!r})"


_MESSAGES: dict[str, type[Message]] = {}  # full name -> message class
_DATAPACKS: dict[str, type[ProtobufDataPack]] = {}  # full name -> datapack class
_PACKAGES: dict[str, str] = {}  # protobuf package name -> module name


def _build() -> dict[str, Any]:
    names: dict[str, Any] = {}
    for module_name in PROTOBUF_MODULES:
        module = importlib.import_module(module_name)
        package = module.DESCRIPTOR.package
        _PACKAGES[package] = module_name
        for message_name in module.DESCRIPTOR.message_types_by_name:
            message_class = getattr(module, message_name)
            full_name = message_class.DESCRIPTOR.full_name
            attributes = {"__slots__": (), "message_class": message_class, "type_name": full_name}
            stem = f"{package}{message_name}"
            datapack_class = type(f"{stem}DataPack", (ProtobufDataPack,), attributes)
            raw_class = type(f"{stem}RawData", (ProtobufRawData,), dict(attributes))
            for cls in (datapack_class, raw_class):
                cls.__module__ = __name__
            _MESSAGES[full_name] = message_class
            _DATAPACKS[full_name] = datapack_class
            names[stem] = message_class
            names[datapack_class.__name__] = datapack_class
            names[raw_class.__name__] = raw_class
    return names


_GENERATED = _build()
globals().update(_GENERATED)
__all__ += sorted(_GENERATED)


def protobuf_packages() -> list[str]:
    """The protobuf package names usable in ``ProtobufPackages``."""
    return sorted(_PACKAGES)


def package_of(type_name: str) -> str:
    """The protobuf package of a full message name (``"Dump.String"`` -> ``"Dump"``)."""
    return type_name.rpartition(".")[0]


def message_class_for(type_name: str) -> type[Message]:
    """The message class of a full protobuf name.

    Raises:
        KeyError: not a message of the NRP protobuf packages.
    """
    try:
        return _MESSAGES[type_name]
    except KeyError:
        raise KeyError(
            f"'{type_name}' is not a message of the NRP protobuf packages ({', '.join(protobuf_packages())})"
        ) from None


def datapack_class_for(type_name: str) -> type[ProtobufDataPack]:
    """The datapack class of a full protobuf name (``"Dump.String"`` -> ``DumpStringDataPack``).

    Raises:
        KeyError: not a message of the NRP protobuf packages.
    """
    message_class_for(type_name)
    return _DATAPACKS[type_name]


def datapack_from_bytes(name: str, engine_name: str, type_name: str, payload: bytes) -> ProtobufDataPack:
    """A datapack of type ``type_name`` holding the message parsed from ``payload``.

    Raises:
        KeyError: ``type_name`` is not a message of the NRP protobuf packages.
        google.protobuf.message.DecodeError: ``payload`` does not parse.
    """
    cls = _DATAPACKS.get(type_name)
    if cls is None:
        cls = datapack_class_for(type_name)  # raises, naming the packages
    return cls(name, engine_name, cls.message_class.FromString(payload))


def datapack_from_message(name: str, engine_name: str, message: Message) -> ProtobufDataPack:
    """A datapack holding ``message`` itself (its class decides the datapack class).

    Raises:
        KeyError: not a message of the NRP protobuf packages.
    """
    return datapack_class_for(message.DESCRIPTOR.full_name)(name, engine_name, message)
