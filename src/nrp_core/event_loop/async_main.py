"""Entry points of the async engine commands (``[project.scripts]``); see :mod:`.async_engine`."""

from __future__ import annotations

from nrp_core.event_loop.async_engine import (
    JSONEngineWrapper,
    JSONEventLoopEngine,
    ProtoEventLoopEngine,
    parse_engine_config,
    run_event_loop_engine_app,
)

__all__ = ["grpc_main", "json_main", "pysim_main"]


def json_main() -> int:
    """``async_python_json_engine.py``."""
    return run_event_loop_engine_app(parse_engine_config, JSONEngineWrapper, JSONEventLoopEngine)


def pysim_main() -> int:
    """``async_pysim_engine.py``: a PySim engine script."""
    from nrp_core.engines.py_sim.server import make_server

    return run_event_loop_engine_app(
        lambda path: parse_engine_config(path, "py_sim"),
        lambda: JSONEngineWrapper(make_server),
        JSONEventLoopEngine,
    )


def grpc_main() -> int:
    """``async_python_grpc_engine.py``: a ``python_grpc`` engine script (protobuf datapacks)."""
    from nrp_core.engines.python_grpc.server import GrpcEngineServer

    return run_event_loop_engine_app(
        lambda path: parse_engine_config(path, "python_grpc"),
        lambda: JSONEngineWrapper(GrpcEngineServer),
        ProtoEventLoopEngine,
    )
