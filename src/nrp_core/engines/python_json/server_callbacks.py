"""Engine-side handling of the six JSON engine operations.

The operations are ``initialize``, ``run_loop``, ``set_datapacks``, ``get_datapacks``, ``reset``
and ``shutdown``. :class:`EngineServer` holds one user script, so that several engines can live in
one process when they run in-process. Each method takes and returns the plain JSON documents that
nrp-core's JSON engines exchange over REST.

For compatibility with nrp-core's test suite the module also offers functions of the same names,
delegating to a module-level default server whose script is the module attribute ``script``.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE
from nrp_core.engines.python_json.engine_script import EngineScript
from nrp_core.errors import EngineRequestError, EngineScriptError, EngineScriptLoadError

__all__ = [
    "EngineServer",
    "get_datapacks",
    "initialize",
    "load_script_class",
    "reset",
    "run_loop",
    "script",
    "set_datapacks",
    "shutdown",
]

TIME_RATIO = [1, 1000000000]
_SET_KEYS = ("data", "engine_name", "type")
_GET_KEYS = ("engine_name", "type")
_module_counter = itertools.count()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


def load_script_class(
    file_name: str | Path, base_dir: str | Path | None = None, base: type = EngineScript
) -> type[Any]:
    """Load a user engine script file and return its ``Script`` class.

    The file is loaded by path under a unique module name (so installed modules cannot shadow it,
    and several engines may use files of the same name), with its directory first on ``sys.path``
    so that it can import its neighbours.

    Args:
        file_name: the script file; a relative path is taken relative to ``base_dir``, else to the
            working directory.
        base_dir: directory of relative file names (the experiment directory).

    Raises:
        EngineScriptLoadError: the file is missing, raises while loading (the user's traceback is
            kept), has no ``Script`` class, or ``Script`` does not inherit from ``EngineScript``.
    """
    path = Path(file_name)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    path = path.absolute()
    if not path.is_file():
        raise EngineScriptLoadError("Engine script file not found", str(path))
    directory = str(path.parent)
    if not sys.path or sys.path[0] != directory:
        if directory in sys.path:
            sys.path.remove(directory)
        sys.path.insert(0, directory)
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"_nrp_engine_script_{next(_module_counter)}_{stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise EngineScriptLoadError("Cannot load engine script", str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise EngineScriptLoadError.from_exception(f"Failed to load engine script {path.name}", exc) from exc
    script_class = getattr(module, "Script", None)
    if script_class is None:
        raise EngineScriptLoadError(f"Engine script {path.name} does not define a class named 'Script'")
    if not (isinstance(script_class, type) and issubclass(script_class, base)):
        raise EngineScriptLoadError(f"Script class must inherit from {base.__name__} class", str(path))
    return script_class


class EngineServer:
    """Serves the six engine operations for one user script.

    Args:
        base_dir: directory against which a relative ``PythonFileName`` is resolved; default: the
            working directory (an engine process runs in the experiment directory).

    Attributes:
        script: the user's ``Script`` instance, ``None`` before ``initialize``.
    """

    script_base: type = EngineScript
    """The class engine scripts must inherit from."""

    def __init__(self, base_dir: str | Path | None = None) -> None:
        self.base_dir = base_dir
        self.script: Any = None

    def _require_script(self, operation: str) -> Any:
        script = self.script
        if script is None:
            raise EngineRequestError(f"{operation}: the engine is not initialized (no engine script loaded)")
        return script

    def _call_user(self, failure: str, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except Exception as exc:
            engine_name = self.script._name if self.script is not None else ""
            raise EngineScriptError.from_exception(failure, exc, engine_name) from exc

    def initialize(self, request: dict[str, Any]) -> None:
        """Load ``request["PythonFileName"]``, instantiate its ``Script`` and call ``initialize()``.

        ``_name`` is set to ``request["EngineName"]`` and ``_config`` to the request itself.

        Raises:
            EngineRequestError: ``TimeRatio`` is not ``[1, 1000000000]`` (``PythonJSONEngine only
                support nanoseconds``) or ``PythonFileName`` is missing.
            EngineScriptLoadError: the script cannot be loaded (see :func:`load_script_class`).
            EngineScriptError: ``Initialization failed``: the constructor or ``initialize()`` raised.
        """
        if not isinstance(request, dict):
            raise EngineRequestError(f"initialize expects the engine config object, got {request!r}")
        time_ratio = request.get("TimeRatio")
        if not isinstance(time_ratio, (list, tuple)) or list(time_ratio) != TIME_RATIO:
            raise EngineRequestError(
                "PythonJSONEngine only support nanoseconds: TimeRatio must be "
                f"{TIME_RATIO}, got {time_ratio!r}"
            )
        file_name = request.get("PythonFileName")
        if not file_name:
            raise EngineRequestError("initialize: the engine config has no PythonFileName")
        script_class = load_script_class(file_name, self.base_dir, self.script_base)
        script = self._call_user("Initialization failed", script_class)
        script._name = request.get("EngineName", "")
        script._config = request
        self.script = script
        try:
            self._call_user("Initialization failed", script.initialize)
        finally:
            _flush()

    def run_loop(self, request: dict[str, Any]) -> dict[str, int]:
        """Advance the engine time by ``request["time_step"]``, then call ``runLoop(time_step)``.

        Returns:
            ``{"time": <engine time in ns after the step>}``.

        Raises:
            EngineRequestError: no script, or ``time_step`` missing, not an int or negative.
            EngineScriptError: ``RunLoop failed``: ``runLoop`` raised (the time stays advanced).
        """
        script = self._require_script("run_loop")
        try:
            time_step = request["time_step"]
        except (KeyError, TypeError):
            raise EngineRequestError(f"run_loop expects {{'time_step': <int ns>}}, got {request!r}") from None
        if type(time_step) is not int or time_step < 0:
            raise EngineRequestError(
                f"run_loop: time_step must be a non-negative int (ns), got {time_step!r}"
            )
        script._advanceTime(time_step)
        # No flush per step (only initialize, reset and shutdown flush): engine processes write whole
        # lines already, and a flush per step costs two system calls per engine.
        self._call_user("RunLoop failed", script.runLoop, time_step)
        return {"time": script._time_ns}

    def set_datapacks(self, request: dict[str, Any] | None) -> None:
        """Store each datapack's ``data`` in the script (nothing for an empty or null request).

        Raises:
            EngineRequestError: an entry lacks ``data``, ``engine_name`` or ``type``
                (``Malformed DataPack``), or its type is not the JSON datapack type.
            DataPackRegistrationError: a datapack is not registered by the script.
        """
        if not request:
            return
        script = self._require_script("set_datapacks")
        for name, entry in request.items():
            if isinstance(entry, dict) and "proto" in entry:
                raise EngineRequestError(
                    f"DataPack '{name}' is a protobuf datapack ({entry.get('type')}), but JSON engine "
                    f"'{script._name}' only handles JSON datapacks ({JSON_DATAPACK_TYPE!r})"
                )
            if not isinstance(entry, dict) or any(key not in entry for key in _SET_KEYS):
                raise EngineRequestError(_malformed(name, entry, _SET_KEYS))
            if entry["type"] != JSON_DATAPACK_TYPE:
                raise EngineRequestError(
                    f"DataPack '{name}' has type {entry['type']!r}, but JSON engine '{script._name}' "
                    f"only handles JSON datapacks ({JSON_DATAPACK_TYPE!r})"
                )
            script._setDataPack(name, entry["data"])

    def get_datapacks(self, request: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        """Return the requested datapacks (``{}`` for an empty or null request).

        Returns:
            per name ``{"engine_name": <this engine>, "type": <JSON type>, "data": <stored data>}``;
            ``data`` is the stored object itself (``None`` if never set).

        Raises:
            EngineRequestError: an entry is malformed or names another engine (``Requesting
                DataPack '...' from incorrect engine ...``).
            DataPackRegistrationError: a datapack is not registered by the script.
        """
        if not request:
            return {}
        script = self._require_script("get_datapacks")
        own_name = script._name
        reply = {}
        for name, entry in request.items():
            if not isinstance(entry, dict) or "engine_name" not in entry:
                raise EngineRequestError(_malformed(name, entry, _GET_KEYS))
            if entry["engine_name"] != own_name:
                raise EngineRequestError(
                    f"Requesting DataPack '{name}' from incorrect engine "
                    f"'{entry['engine_name']}' (this engine is '{own_name}')"
                )
            data = script._getDataPack(name)
            reply[name] = {"engine_name": own_name, "type": JSON_DATAPACK_TYPE, "data": data}
        return reply

    def reset(self, request: Any = None) -> None:
        """Call the script's ``reset()``, then set the engine time to 0 (kept if ``reset()`` raised).

        Raises:
            EngineScriptError: ``Reset failed``.
        """
        script = self._require_script("reset")
        try:
            self._call_user("Reset failed", script.reset)
        finally:
            _flush()
        script._time_ns = 0

    def shutdown(self, request: Any = None) -> None:
        """Call the script's ``shutdown()`` if a script is loaded.

        Raises:
            EngineScriptError: ``Shutdown failed``.
        """
        script = self.script
        if script is None:
            return
        try:
            self._call_user("Shutdown failed", script.shutdown)
        finally:
            _flush()


def _malformed(name: str, entry: Any, expected: tuple[str, ...]) -> str:
    got = sorted(entry) if isinstance(entry, dict) else entry
    keys = ", ".join(f"'{key}'" for key in expected)
    return f"Malformed DataPack. Expected keys: {keys}. DataPack '{name}' has: {got!r}"


# -- module-level interface (nrp-core's server_callbacks) -------------------------------------------

script: EngineScript | None = None
"""The user script of the module-level default server; assignable, as in nrp-core."""

_default_server = EngineServer()


def _dispatch(operation: str, request: Any) -> Any:
    global script
    _default_server.script = script
    try:
        return getattr(_default_server, operation)(request)
    finally:
        script = _default_server.script


def initialize(request_json: dict[str, Any]) -> None:
    """:meth:`EngineServer.initialize` on the module's default server."""
    return _dispatch("initialize", request_json)


def run_loop(request_json: dict[str, Any]) -> dict[str, int]:
    """:meth:`EngineServer.run_loop` on the module's default server."""
    return _dispatch("run_loop", request_json)


def set_datapacks(request_json: dict[str, Any] | None) -> None:
    """:meth:`EngineServer.set_datapacks` on the module's default server."""
    return _dispatch("set_datapacks", request_json)


def get_datapacks(request_json: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """:meth:`EngineServer.get_datapacks` on the module's default server."""
    return _dispatch("get_datapacks", request_json)


def reset(request_json: Any = None) -> None:
    """:meth:`EngineServer.reset` on the module's default server."""
    return _dispatch("reset", request_json)


def shutdown(request_json: Any = None) -> None:
    """:meth:`EngineServer.shutdown` on the module's default server."""
    return _dispatch("shutdown", request_json)
