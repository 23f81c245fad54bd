"""Python JSON engines: user scripts subclass :class:`EngineScript`.

nrp-core's names for running a JSON engine asynchronously (``JSONEngineWrapper``,
``JSONEventLoopEngine``, ``parseAndValidateEngineConfig``) are imported on first use, so that
engine processes stay light.
"""

from __future__ import annotations

from typing import Any

from nrp_core.engines.python_json.engine_script import EngineScript

__all__ = ["EngineScript"]

_ASYNC = {
    "JSONEngineWrapper": "JSONEngineWrapper",
    "JSONEventLoopEngine": "JSONEventLoopEngine",
    "parseAndValidateEngineConfig": "parse_engine_config",
}


def __getattr__(name: str) -> Any:
    if name in _ASYNC:
        from nrp_core.event_loop import async_engine

        return getattr(async_engine, _ASYNC[name])
    raise AttributeError(f"module 'nrp_core.engines.python_json' has no attribute {name!r}")
