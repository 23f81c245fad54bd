"""Entry points of the async engine commands (``[project.scripts]``); see :mod:`.async_engine`."""

from __future__ import annotations

import sys

from nrp_core.event_loop.async_engine import (
    JSONEngineWrapper,
    JSONEventLoopEngine,
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
    """``async_python_grpc_engine.py``: protobuf engines are not supported yet."""
    print(
        "async_python_grpc_engine.py: python_grpc engines (protobuf datapacks) are not supported yet",
        file=sys.stderr,
    )
    return 2
