"""The engine inside NEST Server: the ``nest_json`` engine code, called through NEST Server's ``/exec``.

Each engine operation is one ``/exec`` request whose source calls :func:`call` here; the module
(and the engine state in it) lives as long as the NEST Server process. Arguments and results travel
as JSON text, so NEST Server's own serialization only ever sees a string.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from nrp_core.engines.nest_json.server import NestEngineServer

__all__ = ["call"]

_server: NestEngineServer | None = None


def _engine() -> NestEngineServer:
    global _server
    if _server is None:
        _server = NestEngineServer()
        _server.engine_type = "nest_server"
        nrp_core = importlib.import_module("nrp_core")
        importlib.import_module("nrp_core.engines.nest_server.brain_devices")
        _server.brain_globals = {"nest": _server.nest, "nrp_core": nrp_core}
    return _server


def call(op: str, payload: str) -> str:
    """Run engine operation ``op`` with the JSON ``payload``; the result as JSON text.

    ``op`` is ``initialize`` (payload ``{"config": <engine config>, "source": <brain script>}``),
    ``step`` (``{"set": <set_datapacks request>, "time_step": <ns or null>, "get": <get request>}``:
    set, advance, read, in one request), ``get``, ``reset`` or ``shutdown``.
    """
    engine = _engine()
    request = json.loads(payload)
    result: Any = None
    if op == "initialize":
        engine.brain_source = request.get("source")
        engine.initialize(request["config"])
    elif op == "step":
        if request.get("set"):
            engine.set_datapacks(request["set"])
        time = None
        if request.get("time_step") is not None:
            time = engine.run_loop({"time_step": request["time_step"]})["time"]
        result = {"time": time, "datapacks": engine.get_datapacks(request.get("get"))}
    elif op == "get":
        result = engine.get_datapacks(request)
    elif op == "reset":
        engine.reset()
    elif op == "shutdown":
        engine.shutdown()
    else:
        raise ValueError(f"unknown nest_server engine operation {op!r}")
    return json.dumps(result)
