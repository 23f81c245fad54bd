"""In-process engines (``{"LaunchType": "InProcess"}``): the engine server object in the loop's own
process, stepped synchronously in the loop thread."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from nrp_core.datapacks import DataPackInterface
from nrp_core.engines.channel import error_details
from nrp_core.engines.handle import (
    ENGINE_TYPES,
    EngineError,
    EngineHandle,
    _datapacks_from_reply,
    _get_request,
    _load_factory,
    _set_request,
)

__all__ = ["InProcessEngine"]


class InProcessEngine(EngineHandle):
    """An engine server object in the loop's process, stepped synchronously in the loop thread."""

    def __init__(self, config: Mapping[str, Any], experiment_dir: Path) -> None:
        super().__init__(config, experiment_dir)
        self._server: Any = None
        self._get: dict[str, Any] = {}

    def start(self) -> None:
        _worker, factory = ENGINE_TYPES[self.config["EngineType"]]
        self._server = self._call("start", _load_factory(factory))

    def _call(self, op: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            raise EngineError.from_details(self.name, error_details(op, exc)) from exc

    def _fetch(self) -> list[DataPackInterface]:
        if not self._get:
            return []
        fetched = self._call("get_datapacks", self._server.get_datapacks, self._get)
        return _datapacks_from_reply(self.name, fetched)

    def initialize(self, requested: Mapping[str, str]) -> list[DataPackInterface]:
        config = self._engine_config()
        python_file = config.get("PythonFileName")
        if python_file and not Path(python_file).is_absolute():
            # No chdir in the loop's process: resolve the script against the experiment directory.
            config["PythonFileName"] = str(self.experiment_dir / python_file)
        # Engine processes run in the experiment directory; in-process servers learn it from this key
        # to resolve their other files (world, brain script, data directory).
        config.setdefault("ExperimentDirectory", str(self.experiment_dir.absolute()))
        self._call("initialize", self._server.initialize, config)
        self._get = _get_request(requested, self.name)
        self.engine_time = 0
        self._ready = self._fetch()
        return list(self._ready)

    def begin_step(self, datapacks: Iterable[DataPackInterface], time_step: int | None) -> None:
        server = self._server
        op = "set_datapacks"
        try:
            if datapacks:
                request = _set_request(datapacks, copy=True)
                if request:
                    server.set_datapacks(request)
            if time_step is not None:
                op = "run_loop"
                self.engine_time = int(server.run_loop({"time_step": time_step})["time"])
            if self._get:
                op = "get_datapacks"
                self._ready = _datapacks_from_reply(self.name, server.get_datapacks(self._get))
            else:
                self._ready = []
        except Exception as exc:
            raise EngineError.from_details(self.name, error_details(op, exc)) from exc

    def finish_step(self) -> list[DataPackInterface]:
        ready = self._ready
        self._ready = None
        return ready if ready is not None else self._fetch()

    def reset(self, datapacks: Iterable[DataPackInterface]) -> list[DataPackInterface]:
        request = _set_request(datapacks, copy=True)
        if request:
            self._call("set_datapacks", self._server.set_datapacks, request)
        self._call("reset", self._server.reset, "reset")
        self.engine_time = 0
        self._ready = self._fetch()
        return list(self._ready)

    def shutdown(self) -> None:
        if self._server is not None:
            self._call("shutdown", self._server.shutdown, None)

    def close(self) -> None:
        self._server = None
