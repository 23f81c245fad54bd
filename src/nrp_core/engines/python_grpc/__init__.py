"""Python gRPC engines: user scripts subclass :class:`GrpcEngineScript` and exchange protobuf messages."""

from nrp_core.engines.python_grpc.engine_script import GrpcEngineScript

__all__ = ["GrpcEngineScript"]
