"""``GrpcEngineScript``: the base class of Python gRPC engine scripts (protobuf datapacks).

A user file defines ``class Script(GrpcEngineScript)``; the engine server instantiates it without
arguments, sets ``_name`` and ``_config``, then calls the hooks, as for JSON engine scripts. Each
datapack is registered with its protobuf message class and holds one message of that class.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from nrp_core.engines.python_json.engine_script import ScriptLife

__all__ = ["GrpcEngineScript"]


class GrpcEngineScript(ScriptLife):
    """Base class of a Python gRPC engine's user script.

    Override the hooks :meth:`initialize`, :meth:`runLoop`, :meth:`reset` and :meth:`shutdown`;
    keep the engine's datapacks with :meth:`_registerDataPack`, :meth:`_setDataPack` and
    :meth:`_getDataPack`. Name, config and time: :class:`ScriptLife`.

    Attributes:
        _datapacks_msgs: datapack name -> the message it holds (a new, empty message once registered).
    """

    _datapacks_msgs: dict[str, Message]

    def _new_datapack_store(self) -> None:
        self._datapacks_msgs = {}

    # -- datapacks ----------------------------------------------------------------------------

    def _registerDataPack(self, datapack_name: str, protobuf_type: type[Message]) -> None:
        """Register a datapack holding messages of ``protobuf_type`` (initially an empty message).

        Raises:
            ValueError: the name is already registered.
            TypeError: ``protobuf_type`` is not a protobuf message class.
        """
        if datapack_name in self._datapacks_msgs:
            raise ValueError(
                f"[{self._name}] While registering Datapack. "
                f"DataPack with specified name ({datapack_name}) already registered"
            )
        if not (isinstance(protobuf_type, type) and issubclass(protobuf_type, Message)):
            raise TypeError(
                f"[{self._name}] While registering Datapack. "
                "'protobuf_type' argument must be a Python Protobuf Message type"
            )
        self._datapacks_msgs[datapack_name] = protobuf_type()

    def _getRegisteredDataPackNames(self) -> list[str]:
        """The names of the registered datapacks, in registration order."""
        return list(self._datapacks_msgs)

    def _getDataPack(self, datapack_name: str) -> Any:
        """The stored message itself, not a copy.

        Raises:
            ValueError: the datapack is not registered.
        """
        try:
            return self._datapacks_msgs[datapack_name]
        except KeyError:
            raise ValueError(
                f"[{self._name}] While getting Datapack. "
                f"Attempting to get data from an unregistered DataPack ({datapack_name})"
            ) from None

    def _setDataPack(self, datapack_name: str, data: Message) -> None:
        """Store ``data`` (kept, not copied) for a registered datapack.

        Raises:
            ValueError: the datapack is not registered.
            TypeError: ``data`` is not of the registered message type.
        """
        current = self._datapacks_msgs.get(datapack_name)
        if current is None:
            raise ValueError(
                f"[{self._name}] While setting Datapack. "
                f"Attempting to set data on an unregistered DataPack ({datapack_name})"
            )
        if not isinstance(data, type(current)):
            raise TypeError(
                f"[{self._name}] While setting Datapack. DataPack ({datapack_name}) was registered with "
                f"type {current.DESCRIPTOR.full_name}. Attempting to set it with type {type(data).__name__}"
            )
        self._datapacks_msgs[datapack_name] = data
