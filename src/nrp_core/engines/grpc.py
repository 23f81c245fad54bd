"""nrp-core's engine gRPC protocol (``EngineGrpcService`` of ``engine_grpc.proto``), both sides.

:class:`GrpcEngine` is the loop's handle on an engine server already running at ``ServerAddress``
(``{"LaunchType": "EmptyLaunchCommand"}`` for a gRPC engine type), possibly on another machine.
:func:`serve_engine` serves any engine server object (a
:class:`~nrp_core.engines.python_grpc.server.GrpcEngineServer`, a JSON engine server) as an
``EngineGrpcService``; ``python -m nrp_core.engines.grpc --engine-type=python_grpc
--server_address=HOST:PORT`` runs one and prints ``Listening on grpc://HOST:PORT``.

Datapacks travel as ``DataPackMessage``: protobuf datapacks as an ``Any`` holding the message,
JSON datapacks as an ``Any`` holding an ``NrpCore.JsonMessage`` (the JSON text), as nrp-core's
client does. An engine-side failure aborts the call with ``INTERNAL`` and a JSON description
(operation, error, user file and line, traceback) that the handle turns back into an
:class:`~nrp_core.errors.EngineError`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from concurrent import futures
from pathlib import Path
from typing import Any

from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE
from nrp_core.datapacks import DataPackInterface
from nrp_core.engines.handle import (
    EngineError,
    EngineHandle,
    _datapacks_from_reply,
    _get_request,
    _set_request,
)

__all__ = ["GrpcEngine", "datapack_messages", "requests_from_messages", "serve_engine"]

_TYPE_URL = "type.googleapis.com/"
_JSON_MESSAGE = "NrpCore.JsonMessage"


def datapack_messages(request: Mapping[str, Mapping[str, Any]]) -> list[Any]:
    """``DataPackMessage``\\ s for a wire request ``{name: {"engine_name", "type", "data"|"proto"}}``;
    entries with neither are sent without data (the id only)."""
    from nrp_protobuf.engine_grpc_pb2 import DataPackMessage
    from nrp_protobuf.nrp_server_pb2 import JsonMessage

    messages = []
    for name, entry in request.items():
        message = DataPackMessage()
        message.dataPackId.dataPackName = name
        message.dataPackId.engineName = entry.get("engine_name", "")
        message.dataPackId.dataPackType = entry.get("type", "")
        if "proto" in entry:
            message.data.type_url = _TYPE_URL + entry["type"]
            message.data.value = entry["proto"]
        elif "data" in entry:
            message.data.Pack(JsonMessage(data=json.dumps(entry["data"])))
        messages.append(message)
    return messages


def requests_from_messages(messages: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """The wire request for ``DataPackMessage``\\ s (the inverse of :func:`datapack_messages`)."""
    from nrp_protobuf.nrp_server_pb2 import JsonMessage

    request: dict[str, dict[str, Any]] = {}
    for message in messages:
        identifier = message.dataPackId
        entry: dict[str, Any] = {"engine_name": identifier.engineName, "type": identifier.dataPackType}
        if message.HasField("data"):
            type_name = message.data.type_url.rpartition("/")[2]
            if type_name == _JSON_MESSAGE:
                text = JsonMessage()
                message.data.Unpack(text)
                entry["data"] = json.loads(text.data) if text.data else None
                entry["type"] = JSON_DATAPACK_TYPE
            else:
                entry["proto"] = message.data.value
                entry["type"] = type_name
        request[identifier.dataPackName] = entry
    return request


def _raise_from_rpc(engine_name: str, op: str, error: Any) -> EngineError:
    import grpc

    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    if code == grpc.StatusCode.INTERNAL:
        try:
            described = json.loads(details or "")
        except ValueError:
            described = None
        if isinstance(described, dict):
            return EngineError.from_details(engine_name, described)
    name = code.name if code is not None else type(error).__name__
    return EngineError(engine_name, op, f"gRPC {name}: {details}")


class GrpcEngine(EngineHandle):
    """An ``EngineGrpcService`` already running at ``ServerAddress``, reached over gRPC.

    Steps run in a helper thread so that engines still step in parallel; a step's reply is awaited
    at the engine's next synchronization, as for engine processes. ``EngineCommandTimeout`` bounds
    steps; unreachable servers fail after ``READY_TIMEOUT_S``.
    """

    READY_TIMEOUT_S = 20.0

    def __init__(self, config: Mapping[str, Any], experiment_dir: Path) -> None:
        super().__init__(config, experiment_dir)
        self.address = str(config.get("ServerAddress") or "localhost:9004")
        self._channel: Any = None
        self._stub: Any = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._future: futures.Future[list[DataPackInterface]] | None = None
        self._get: dict[str, Any] = {}

    def start(self) -> None:
        import grpc
        from nrp_protobuf.engine_grpc_pb2_grpc import EngineGrpcServiceStub

        self._channel = grpc.insecure_channel(self.address)
        self._stub = EngineGrpcServiceStub(self._channel)
        self._executor = futures.ThreadPoolExecutor(1, thread_name_prefix=f"engine-{self.name}")

    def wait_ready(self) -> None:
        import grpc

        try:
            grpc.channel_ready_future(self._channel).result(timeout=self.READY_TIMEOUT_S)
        except grpc.FutureTimeoutError:
            raise EngineError(
                self.name,
                "launch",
                f"no engine server answers at {self.address} within {self.READY_TIMEOUT_S:g} s",
            ) from None

    def _call(self, op: str, method: str, message: Any, timeout: float | None = None) -> Any:
        import grpc

        try:
            return getattr(self._stub, method)(message, timeout=timeout)
        except grpc.RpcError as exc:
            raise _raise_from_rpc(self.name, op, exc) from None

    def _set(self, request: Mapping[str, Any]) -> None:
        if request:
            from nrp_protobuf.engine_grpc_pb2 import SetDataPacksRequest

            message = SetDataPacksRequest(dataPacks=datapack_messages(request))
            self._call("set_datapacks", "setDataPacks", message, self.command_timeout)

    def _fetch(self) -> list[DataPackInterface]:
        if not self._get:
            return []
        from nrp_protobuf.engine_grpc_pb2 import DataPackIdentifier, GetDataPacksRequest

        ids = [
            DataPackIdentifier(dataPackName=name, engineName=entry["engine_name"], dataPackType=entry["type"])
            for name, entry in self._get.items()
        ]
        reply = self._call(
            "get_datapacks", "getDataPacks", GetDataPacksRequest(datapackIds=ids), self.command_timeout
        )
        return _datapacks_from_reply(self.name, requests_from_messages(reply.dataPacks))

    def _step(self, request: dict[str, Any], time_step: int | None) -> list[DataPackInterface]:
        from nrp_protobuf.engine_grpc_pb2 import RunLoopStepRequest

        self._set(request)
        if time_step is not None:
            reply = self._call(
                "run_loop", "runLoopStep", RunLoopStepRequest(timeStep=time_step), self.command_timeout
            )
            self.engine_time = int(reply.engineTime)
        return self._fetch()

    def initialize(self, requested: Mapping[str, str]) -> list[DataPackInterface]:
        from nrp_protobuf.engine_grpc_pb2 import InitializeRequest

        config = self._engine_config()
        self._call("initialize", "initialize", InitializeRequest(json=json.dumps(config)))
        self._get = _get_request(requested, self.name)
        self.engine_time = 0
        self._ready = self._fetch()
        return list(self._ready)

    def begin_step(self, datapacks: Iterable[DataPackInterface], time_step: int | None) -> None:
        assert self._executor is not None
        self._future = self._executor.submit(self._step, _set_request(datapacks, copy=True), time_step)
        self._ready = None

    def finish_step(self) -> list[DataPackInterface]:
        future, self._future = self._future, None
        if future is None:
            ready, self._ready = self._ready, None
            return ready if ready is not None else self._fetch()
        return future.result()

    def settle(self) -> None:
        if self._future is not None:
            self._ready = self.finish_step()

    def reset(self, datapacks: Iterable[DataPackInterface]) -> list[DataPackInterface]:
        from nrp_protobuf.engine_grpc_pb2 import ResetRequest

        self.settle()
        self._set(_set_request(datapacks, copy=True))
        self._call("reset", "reset", ResetRequest(json="{}"))
        self.engine_time = 0
        self._ready = self._fetch()
        return list(self._ready)

    def shutdown(self) -> None:
        from nrp_protobuf.engine_grpc_pb2 import ShutdownRequest

        if self._stub is not None:
            try:
                self.settle()
            finally:
                self._call("shutdown", "shutdown", ShutdownRequest(json="{}"), 30.0)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._stub = None


# -- server side --------------------------------------------------------------------------------------


def _servicer(server: Any, stopped: threading.Event) -> Any:
    import grpc
    from nrp_protobuf import engine_grpc_pb2 as pb
    from nrp_protobuf.engine_grpc_pb2_grpc import EngineGrpcServiceServicer

    from nrp_core.engines.channel import error_details

    lock = threading.Lock()  # one request at a time, as the engine script is not thread-safe

    def guarded(op: str, context: Any, call: Any) -> Any:
        with lock:
            try:
                return call()
            except Exception as exc:
                context.abort(grpc.StatusCode.INTERNAL, json.dumps(error_details(op, exc)))

    class Servicer(EngineGrpcServiceServicer):
        def initialize(self, request: Any, context: Any) -> Any:
            config = json.loads(request.json or "{}")
            guarded("initialize", context, lambda: server.initialize(config))
            return pb.InitializeReply(json="{}")

        def runLoopStep(self, request: Any, context: Any) -> Any:
            step = {"time_step": int(request.timeStep)}
            reply = guarded("run_loop", context, lambda: server.run_loop(step))
            return pb.RunLoopStepReply(engineTime=int(reply["time"]))

        def setDataPacks(self, request: Any, context: Any) -> Any:
            wire = requests_from_messages(request.dataPacks)
            guarded("set_datapacks", context, lambda: server.set_datapacks(wire))
            return pb.SetDataPacksReply()

        def getDataPacks(self, request: Any, context: Any) -> Any:
            wire = {
                ident.dataPackName: {"engine_name": ident.engineName, "type": ident.dataPackType}
                for ident in request.datapackIds
            }
            reply = guarded("get_datapacks", context, lambda: server.get_datapacks(wire))
            return pb.GetDataPacksReply(dataPacks=datapack_messages(reply or {}))

        def reset(self, request: Any, context: Any) -> Any:
            guarded("reset", context, lambda: server.reset("reset"))
            return pb.ResetReply(json="{}")

        def shutdown(self, request: Any, context: Any) -> Any:
            guarded("shutdown", context, lambda: server.shutdown(None))
            stopped.set()
            return pb.ShutdownReply(json="{}")

    return Servicer()


def serve_engine(server: Any, address: str) -> tuple[Any, int, threading.Event]:
    """Start serving ``server`` as an ``EngineGrpcService`` on ``address`` (port 0: a free port).

    Returns:
        ``(grpc_server, port, stopped)``: ``stopped`` is set once a ``shutdown`` request was served.

    Raises:
        OSError: the address cannot be bound.
    """
    import grpc
    from nrp_protobuf.engine_grpc_pb2_grpc import add_EngineGrpcServiceServicer_to_server

    stopped = threading.Event()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(4))
    add_EngineGrpcServiceServicer_to_server(_servicer(server, stopped), grpc_server)
    try:
        port = grpc_server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    grpc_server.start()
    return grpc_server, port, stopped


def main(argv: list[str] | None = None) -> int:
    """``python -m nrp_core.engines.grpc --engine-type=TYPE --server_address=HOST:PORT``."""
    import argparse
    import importlib

    from nrp_core.engines.handle import ENGINE_TYPES

    parser = argparse.ArgumentParser(prog="python -m nrp_core.engines.grpc", description=main.__doc__)
    parser.add_argument("--engine-type", default="python_grpc", choices=sorted(ENGINE_TYPES))
    parser.add_argument("--server_address", "--serverurl", default="localhost:9004")
    args, _unknown = parser.parse_known_args(argv)
    module_name, _, attribute = ENGINE_TYPES[args.engine_type][1].partition(":")
    server = getattr(importlib.import_module(module_name), attribute)()
    try:
        grpc_server, port, stopped = serve_engine(server, args.server_address)
    except OSError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    host = args.server_address.rpartition(":")[0] or "localhost"
    print(f"Listening on grpc://{host}:{port}", flush=True)
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    grpc_server.stop(1.0).wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
