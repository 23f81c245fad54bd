"""``NRPCoreSim -m server``: the ``NrpCore`` gRPC service of nrp-core's ``nrp_server.proto``.

:class:`NrpCoreServicer` answers the six calls of the service (``initialize``, ``runLoop``,
``runUntilTimeout``, ``stopLoop``, ``reset``, ``shutdown``) by driving an in-process
:class:`~nrp_core.client.NrpCore`, so that nrp-core's own Python client (the ``nrp-client``
package: ``from nrp_client import NrpCore``) drives our runtime unmodified.

Answers, as nrp-core's server gives them:

- every reply carries the simulation state (``Created``, ``Initialized``, ``Running``,
  ``Stopped``, ``Failed``); a failure inside a legal call replies normally with state ``Failed`` and
  the error text (engine or function, file, line) in ``errorMsg``, which nrp-client raises as
  ``RuntimeError``;
- a call the state machine does not allow is cancelled (``CANCELLED`` with the reason), which
  nrp-client raises as ``ConnectionError``;
- trajectories and client datapacks travel as ``Any``: JSON values as ``NrpCore.JsonMessage``
  (JSON text), protobuf messages as themselves, each with its index in the trajectory.
"""

from __future__ import annotations

import json
import threading
from concurrent import futures
from typing import Any

from nrp_core.client import NrpCore
from nrp_core.errors import NrpCoreStateError

__all__ = ["NrpCoreServicer", "serve"]

_FAILED = object()


def _trajectory(items: list[Any], trajectory: Any) -> None:
    """Fill a ``NrpCore.Trajectory`` with ``items`` (JSON values and protobuf messages)."""
    from google.protobuf.message import Message
    from nrp_protobuf.nrp_server_pb2 import JsonMessage

    for index, item in enumerate(items):
        if isinstance(item, Message):
            entry = trajectory.protoTrajectoryMessages.add()
            entry.dataIndex = index
            entry.data.Pack(item)
        else:
            entry = trajectory.jsonTrajectoryMessages.add()
            entry.dataIndex = index
            entry.data.Pack(JsonMessage(data=json.dumps(item)))


def _client_datapacks(client: NrpCore, datapacks: Any) -> None:
    """Buffer the ``NrpCore.DataPacks`` of a request on ``client``.

    Raises:
        ValueError: a JSON datapack does not hold JSON text, or a protobuf datapack's message is not
            one of the NRP protobuf packages.
    """
    from nrp_protobuf.nrp_server_pb2 import JsonMessage

    from nrp_core.data.nrp_protobuf import message_class_for

    for datapack in datapacks.jsonDataPacks:
        text = JsonMessage()
        datapack.data.Unpack(text)
        try:
            payload = json.loads(text.data) if text.data else None
        except ValueError as exc:
            raise ValueError(f"datapack '{datapack.dataPackId.dataPackName}': invalid JSON: {exc}") from None
        client.set_json_datapack(datapack.dataPackId.dataPackName, datapack.dataPackId.engineName, payload)
    for datapack in datapacks.protoDataPacks:
        type_name = datapack.data.type_url.rpartition("/")[2]
        try:
            message = message_class_for(type_name)()
        except KeyError as exc:
            raise ValueError(f"datapack '{datapack.dataPackId.dataPackName}': {exc.args[0]}") from None
        datapack.data.Unpack(message)
        client.set_proto_datapack(datapack.dataPackId.dataPackName, datapack.dataPackId.engineName, message)


class NrpCoreServicer:
    """The ``NrpCore`` service over one in-process :class:`~nrp_core.client.NrpCore`.

    Args:
        client: the simulation.
        on_shutdown: called once ``shutdown`` has been answered (the server then stops).
    """

    def __init__(self, client: NrpCore, on_shutdown: Any) -> None:
        self.client = client
        self._on_shutdown = on_shutdown

    def _state(self, message: Any) -> Any:
        message.simState.currentState = self.client.current_state()
        if self.client.current_state() == "Failed":
            message.simState.errorMsg = self.client._error
        return message

    def _call(self, context: Any, reply: Any, call: Any) -> tuple[Any, Any]:
        """Run ``call``: ``(reply with the state, the call's result)``, the result being
        :data:`_FAILED` when the simulation failed; an illegal call aborts the RPC (``CANCELLED``),
        invalid client datapacks too (``INVALID_ARGUMENT``)."""
        import grpc

        try:
            result = call()
        except NrpCoreStateError as exc:
            context.abort(grpc.StatusCode.CANCELLED, str(exc))
        except Exception as exc:
            if self.client.current_state() != "Failed":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{type(exc).__name__}: {exc}")
            return self._state(reply), _FAILED
        return self._state(reply), result

    def initialize(self, request: Any, context: Any) -> Any:
        from nrp_protobuf.nrp_server_pb2 import InitializeResponse

        answer, trajectory = self._call(context, InitializeResponse(), self.client.initialize)
        if trajectory is not _FAILED:
            _trajectory(trajectory, answer.trajectory)
        return answer

    def runLoop(self, request: Any, context: Any) -> Any:
        from nrp_protobuf.nrp_server_pb2 import RunLoopResponse

        def run() -> Any:
            self.client._check("run_loop")  # before buffering: an illegal call leaves no datapack
            _client_datapacks(self.client, request.dataPacks)
            return self.client.run_loop(int(request.numIterations))

        answer, result = self._call(context, RunLoopResponse(), run)
        if result is not _FAILED:
            done, trajectory = result
            answer.doneFlag = bool(done)
            _trajectory(trajectory, answer.trajectory)
        return answer

    def runUntilTimeout(self, request: Any, context: Any) -> Any:
        from nrp_protobuf.nrp_server_pb2 import RunLoopResponse

        answer, result = self._call(context, RunLoopResponse(), self.client.run_until_timeout)
        if result is not _FAILED:
            done, timed_out, trajectory = result
            answer.doneFlag = bool(done)
            answer.timeoutFlag = bool(timed_out)
            _trajectory(trajectory, answer.trajectory)
        return answer

    def stopLoop(self, request: Any, context: Any) -> Any:
        from nrp_protobuf.nrp_server_pb2 import Response

        return self._call(context, Response(), self.client.stop)[0]

    def reset(self, request: Any, context: Any) -> Any:
        from nrp_protobuf.nrp_server_pb2 import ResetResponse

        def reset() -> Any:
            self.client._check("reset")
            _client_datapacks(self.client, request.dataPacks)
            return self.client.reset()

        answer, trajectory = self._call(context, ResetResponse(), reset)
        if trajectory is not _FAILED:
            _trajectory(trajectory, answer.trajectory)
        return answer

    def shutdown(self, request: Any, context: Any) -> Any:
        from nrp_protobuf.nrp_server_pb2 import Response

        try:
            if self.client.current_state() != "Created":
                self.client.shutdown()
        finally:
            context.add_callback(self._on_shutdown)
        return self._state(Response())


def serve(client: NrpCore, address: str) -> tuple[Any, int, threading.Event]:
    """Serve ``client`` as the ``NrpCore`` service on ``address`` (``HOST:PORT``; port 0: a free one).

    Returns:
        ``(grpc_server, port, shut_down)``: ``shut_down`` is set once ``shutdown`` was answered.

    Raises:
        OSError: the address cannot be bound (busy port, unknown host).
    """
    import grpc
    from nrp_protobuf import nrp_server_pb2_grpc

    shut_down = threading.Event()
    servicer = NrpCoreServicer(client, shut_down.set)
    generic = type("Servicer", (nrp_server_pb2_grpc.NrpCoreServicer,), {})()
    for name in ("initialize", "runLoop", "runUntilTimeout", "stopLoop", "reset", "shutdown"):
        setattr(generic, name, getattr(servicer, name))
    server = grpc.server(futures.ThreadPoolExecutor(4), options=[("grpc.so_reuseport", 0)])
    nrp_server_pb2_grpc.add_NrpCoreServicer_to_server(generic, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from None
    if not port:
        raise OSError(f"cannot listen on {address}")
    server.start()
    return server, port, shut_down
