"""JSON engine servers started elsewhere (``EmptyLaunchCommand`` for JSON engines), over HTTP."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nrp_core.datapacks import DataPackInterface
from nrp_core.engines.handle import (
    EngineError,
    EngineHandle,
    _datapacks_from_reply,
    _get_request,
    _set_request,
)

__all__ = ["HttpEngine"]


class HttpEngine(EngineHandle):
    """An engine server already running elsewhere, reached over HTTP.

    Each engine operation is one JSON ``POST <ServerAddress>/<operation>``, as for nrp-core's JSON
    engines. Used for ``{"LaunchType": "EmptyLaunchCommand"}``: nothing is launched and ``ServerAddress``
    is used as is. Steps run in a helper thread so that engines still step in parallel; a step's
    reply is awaited at the engine's next synchronization, as for engine processes.
    """

    def __init__(self, config: Mapping[str, Any], experiment_dir: Path) -> None:
        super().__init__(config, experiment_dir)
        address = str(config.get("ServerAddress") or "localhost:9002")
        self.url = address if "://" in address else f"http://{address}"
        self._session: Any = None
        self._executor: Any = None
        self._future: Any = None
        self._get: dict[str, Any] = {}

    def start(self) -> None:
        import concurrent.futures

        import requests

        self._session = requests.Session()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"engine-{self.name}")

    def _post(self, route: str, body: Any) -> Any:
        import requests

        # EngineCommandTimeout bounds steps, not loading a script, a world or a brain.
        timeout = None if route in ("initialize", "reset") else self.command_timeout
        try:
            response = self._session.post(f"{self.url}/{route}", json=body, timeout=timeout)
        except requests.RequestException as exc:
            raise EngineError(self.name, route, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            try:
                details = response.json()
            except ValueError:
                details = None
            if isinstance(details, dict) and "message" in details:
                raise EngineError(
                    self.name,
                    route,
                    f"{details.get('error', 'Error')}: {details['message']}",
                    tb=str(details.get("traceback", "")),
                )
            raise EngineError(self.name, route, f"HTTP {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def _step(self, request: dict[str, Any], time_step: int | None) -> list[DataPackInterface]:
        self._post("set_datapacks", request)
        if time_step is not None:
            self.engine_time = int(self._post("run_loop", {"time_step": time_step})["time"])
        return _datapacks_from_reply(self.name, self._post("get_datapacks", self._get) if self._get else {})

    def initialize(self, requested: Mapping[str, str]) -> list[DataPackInterface]:
        self._post("initialize", self._engine_config())
        self._get = _get_request(requested, self.name)
        self.engine_time = 0
        self._ready = _datapacks_from_reply(
            self.name, self._post("get_datapacks", self._get) if self._get else {}
        )
        return list(self._ready)

    def begin_step(self, datapacks: Iterable[DataPackInterface], time_step: int | None) -> None:
        self._future = self._executor.submit(self._step, _set_request(datapacks, copy=True), time_step)
        self._ready = None

    def finish_step(self) -> list[DataPackInterface]:
        future, self._future = self._future, None
        if future is None:
            ready, self._ready = self._ready, None
            return (
                ready
                if ready is not None
                else _datapacks_from_reply(self.name, self._post("get_datapacks", self._get))
            )
        return future.result()

    def settle(self) -> None:
        if self._future is not None:
            self._ready = self.finish_step()

    def reset(self, datapacks: Iterable[DataPackInterface]) -> list[DataPackInterface]:
        self.settle()
        self._post("set_datapacks", _set_request(datapacks, copy=True))
        self._post("reset", "reset")
        self.engine_time = 0
        self._ready = _datapacks_from_reply(
            self.name, self._post("get_datapacks", self._get) if self._get else {}
        )
        return list(self._ready)

    def shutdown(self) -> None:
        if self._session is not None:
            try:
                self.settle()
            finally:
                self._post("shutdown", None)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._session is not None:
            self._session.close()
            self._session = None
