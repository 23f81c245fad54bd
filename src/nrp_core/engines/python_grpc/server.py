"""Engine-side handling of the engine operations of ``python_grpc`` engines (protobuf datapacks).

:class:`GrpcEngineServer` is the JSON engine server with protobuf datapacks: scripts inherit from
:class:`~nrp_core.engines.python_grpc.GrpcEngineScript`, and datapacks travel as
``{"engine_name", "type": <full protobuf name>, "proto": <serialized message>}``. A datapack set by
the loop is parsed into the message the script holds (the object stays the same, as in nrp-core).
``ProtobufPackages`` of the engine config lists the protobuf packages the engine may exchange.
"""

from __future__ import annotations

from typing import Any

from nrp_core.data.nrp_protobuf import package_of, protobuf_packages
from nrp_core.engines.python_grpc.engine_script import GrpcEngineScript
from nrp_core.engines.python_json.server_callbacks import EngineServer
from nrp_core.errors import EngineRequestError

__all__ = ["GrpcEngineServer", "make_server"]

DEFAULT_PACKAGES = ("EngineTest",)


class GrpcEngineServer(EngineServer):
    """Serves the engine operations for one :class:`GrpcEngineScript`."""

    script_base = GrpcEngineScript

    def __init__(self, base_dir: Any = None) -> None:
        super().__init__(base_dir)
        self.packages: frozenset[str] = frozenset(DEFAULT_PACKAGES)
        self._allowed_types: set[str] = set()  # message types whose package is in ``packages``

    def initialize(self, request: dict[str, Any]) -> None:
        """As :meth:`EngineServer.initialize`, after checking ``ProtobufPackages``.

        Raises:
            EngineRequestError: a package of ``ProtobufPackages`` is not one of the NRP packages.
        """
        if isinstance(request, dict):
            packages = request.get("ProtobufPackages")
            packages = list(DEFAULT_PACKAGES) if packages is None else list(packages)
            known = protobuf_packages()
            unknown = [package for package in packages if package not in known]
            if unknown:
                raise EngineRequestError(
                    f"ProtobufPackages {unknown} not supported: the known packages are {', '.join(known)}"
                )
            self.packages = frozenset(packages)
            self._allowed_types = set()
        super().initialize(request)

    def _check_package(self, name: str, type_name: str) -> None:
        if package_of(type_name) not in self.packages:
            raise EngineRequestError(
                f"DataPack '{name}' is a {type_name} message, whose package is not in the engine's "
                f"ProtobufPackages {sorted(self.packages)}"
            )

    def set_datapacks(self, request: dict[str, Any] | None) -> None:
        """Parse each datapack's message into the one the script holds.

        Raises:
            EngineRequestError: an entry is not a protobuf datapack, is not registered, has another
                type than the registered one, or does not parse.
        """
        if not request:
            return
        script = self._require_script("set_datapacks")
        for name, entry in request.items():
            payload = entry.get("proto") if isinstance(entry, dict) else None
            if payload is None:
                raise EngineRequestError(
                    f"DataPack '{name}' is not a protobuf datapack: engine '{script._name}' "
                    "(python_grpc) only handles protobuf datapacks"
                )
            current = script._datapacks_msgs.get(name)
            if current is None:
                raise EngineRequestError(
                    f"[{script._name}] While handling Datapack Message. Unregistered DataPack ({name})"
                )
            type_name = current.DESCRIPTOR.full_name
            if entry.get("type") != type_name:
                raise EngineRequestError(
                    f"[{script._name}] While handling Datapack Message. DataPack ({name}) is of type "
                    f"{type_name}. Could not unpack the sent {entry.get('type')} message."
                )
            try:
                current.ParseFromString(payload)
            except Exception as exc:
                raise EngineRequestError(f"DataPack '{name}': {type(exc).__name__}: {exc}") from exc

    def get_datapacks(self, request: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        """The requested datapacks as serialized messages.

        Raises:
            EngineRequestError: an entry names another engine, or the datapack is not registered.
        """
        if not request:
            return {}
        script = self._require_script("get_datapacks")
        own_name = script._name
        messages = script._datapacks_msgs
        reply = {}
        for name, entry in request.items():
            engine_name = entry.get("engine_name") if isinstance(entry, dict) else None
            if engine_name != own_name:
                raise EngineRequestError(
                    f"Requesting DataPack '{name}' from incorrect engine "
                    f"'{engine_name}' (this engine is '{own_name}')"
                )
            message = messages.get(name)
            if message is None:
                raise EngineRequestError(
                    f"[{own_name}] While getting Datapack. "
                    f"Attempting to get data from an unregistered DataPack ({name})"
                )
            type_name = message.DESCRIPTOR.full_name
            if type_name not in self._allowed_types:
                self._check_package(name, type_name)
                self._allowed_types.add(type_name)
            reply[name] = {"engine_name": own_name, "type": type_name, "proto": message.SerializeToString()}
        return reply


def make_server() -> GrpcEngineServer:
    """A fresh :class:`GrpcEngineServer` (working directory: the experiment directory)."""
    return GrpcEngineServer()
