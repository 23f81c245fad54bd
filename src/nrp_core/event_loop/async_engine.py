r"""Engines on their own clock: an Event Loop per engine, exchanging datapacks over MQTT.

The console scripts (:mod:`nrp_core.event_loop.async_main`) ``async_python_json_engine.py`` and
``async_pysim_engine.py`` (the names
nrp-core's examples start as ``ExternalProcesses``) run one engine script standalone:
``--config FILE`` names the EventLoopEngine configuration (``Timestep``, ``Timeout``,
``TimestepWarnThreshold``, ``ProcessLastMsg``, ``DataQueueSize``, ``MQTTConfig`` and the engine's
own config under ``EngineConfig``), ``--loglevel`` the console log level.

Every tick (nrp-core's ``EventLoopEngine``): set the datapacks received on
``<engine>/set/<datapack>`` since the previous tick (only the last one per datapack when
``ProcessLastMsg``), advance the engine by ``Timestep``, then publish every registered datapack
on ``<engine>/get/<datapack>`` as ``{"name", "engine_name", "type", "data"}``. The loop stops at
``Timeout`` (0: never), on SIGINT or SIGTERM, and shuts the engine down.

``async_python_grpc_engine.py`` runs a ``python_grpc`` engine script (:class:`ProtoEventLoopEngine`):
its datapacks travel as serialized ``EngineGrpc.DataPackMessage``\ s, as nrp-core's do.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE
from nrp_core.event_loop.mqtt import MQTTConnection, broker_address, client_id

__all__ = [
    "EngineWrapper",
    "EventLoopEngine",
    "EventLoopInterface",
    "JSONEngineWrapper",
    "JSONEventLoopEngine",
    "ProtoEventLoopEngine",
    "parse_engine_config",
    "run_event_loop_engine_app",
]

logger = logging.getLogger("nrp_core.async_engine")

_DEFAULTS = {
    "Timestep": 0.01,
    "Timeout": 0,
    "TimestepWarnThreshold": 0.001,
    "ProcessLastMsg": True,
    "DataQueueSize": 1,
}


class EventLoopInterface(ABC):
    """nrp-core's Python ``EventLoopInterface``: a callback run every ``timestep`` seconds."""

    def __init__(self, timestep: float, timestep_thres: float) -> None:
        self._timestep = float(timestep)
        self._timestep_thres = float(timestep_thres)
        self._is_initialized = False
        self._stop_request = threading.Event()
        self._run_lock = threading.Lock()

    def run_loop(self, timeout: float) -> None:
        """Tick until ``timeout`` seconds have passed (0: until :meth:`stop_loop`)."""
        if not self._is_initialized:
            logger.debug("EventLoop is not initialized, run_loop can't be called")
            return
        logger.info("Starting Event Loop")
        with self._run_lock:
            start = previous = time.perf_counter()
            while not self._stop_request.is_set():
                step_start = time.perf_counter()
                if timeout and step_start - start >= timeout:
                    break
                if step_start - previous > self._timestep + self._timestep_thres:
                    logger.warning(
                        "Event Loop can't run at the target frequency. Actual step duration: %.4f (s). "
                        "Target step duration: %.4f (s).",
                        step_start - previous,
                        self._timestep,
                    )
                self._run_loop_cb()
                previous = step_start
                remaining = step_start + self._timestep - time.perf_counter()
                if remaining > 0:
                    self._stop_request.wait(remaining)
            self._stop_request.clear()
        logger.info("Completed Event Loop")

    def stop_loop(self) -> None:
        self._stop_request.set()

    def initialize(self) -> None:
        if self._is_initialized:
            return
        self._initialize_cb()
        self._is_initialized = True

    def shutdown(self) -> None:
        if not self._is_initialized:
            return
        self.stop_loop()
        self._shutdown_cb()
        self._is_initialized = False

    @abstractmethod
    def _initialize_cb(self) -> None: ...

    @abstractmethod
    def _run_loop_cb(self) -> None: ...

    @abstractmethod
    def _shutdown_cb(self) -> None: ...


class EngineWrapper(ABC):
    """What an :class:`EventLoopEngine` needs of an engine."""

    @abstractmethod
    def get_engine_name(self) -> str: ...

    @abstractmethod
    def get_registered_datapack_names(self) -> list[str]: ...

    @abstractmethod
    def set_datapack(self, datapack: dict[str, Any]) -> None: ...

    @abstractmethod
    def get_datapack(self, dp_name: str) -> dict[str, Any]: ...

    @abstractmethod
    def initialize(self, config: dict[str, Any]) -> None: ...

    @abstractmethod
    def run_loop(self, timestep_ns: int) -> None: ...

    @abstractmethod
    def shutdown(self) -> None: ...


class JSONEngineWrapper(EngineWrapper):
    """A ``python_json`` (or ``py_sim``) engine script served in this process."""

    def __init__(self, server_factory: Callable[[], Any] | None = None) -> None:
        from nrp_core.engines.python_json.server_callbacks import EngineServer

        self._server = (server_factory or EngineServer)()
        self._initialized = False

    def _script(self) -> Any:
        if not self._initialized:
            raise RuntimeError("Engine wrapper must be initialized first")
        return self._server.script

    def get_engine_name(self) -> str:
        return str(self._script()._name)

    def get_registered_datapack_names(self) -> list[str]:
        return list(self._script()._getRegisteredDataPackNames())

    def set_datapack(self, datapack: dict[str, Any]) -> None:
        self._script()
        self._server.set_datapacks({datapack["name"]: datapack})

    def get_datapack(self, dp_name: str) -> dict[str, Any]:
        name = self.get_engine_name()
        datapack = self._server.get_datapacks({dp_name: {"engine_name": name}})[dp_name]
        return {"name": dp_name, **datapack}

    def initialize(self, config: dict[str, Any]) -> None:
        self._server.initialize(config)
        self._initialized = True

    def run_loop(self, timestep_ns: int) -> None:
        self._script()
        self._server.run_loop({"time_step": int(timestep_ns)})

    def shutdown(self) -> None:
        if self._initialized:
            self._server.shutdown({})
            self._initialized = False


class EventLoopEngine(EventLoopInterface):
    """An engine stepped every ``timestep`` seconds, its datapacks exchanged over MQTT."""

    def __init__(
        self,
        timestep: float,
        timestep_thres: float,
        store_capacity: int,
        do_process_last: bool,
        engine_config: dict[str, Any],
        mqtt_config: dict[str, Any],
        engine_wrapper: EngineWrapper,
    ) -> None:
        super().__init__(timestep, timestep_thres)
        self._store_capacity = max(1, int(store_capacity))
        self._do_process_last = bool(do_process_last)
        self._engine_config = engine_config
        self._mqtt_config = mqtt_config
        self._engine = engine_wrapper
        self._timestep_ns = round(self._timestep * 1e9)
        self._names: list[str] = []
        self._store: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self._mqtt: MQTTConnection | None = None

    def _initialize_cb(self) -> None:
        self._engine.initialize(self._engine_config)
        name = self._engine.get_engine_name()
        self._names = self._engine.get_registered_datapack_names()
        self._store = {dp: [] for dp in self._names}
        connection = MQTTConnection(
            broker_address(self._mqtt_config.get("MQTTBroker")),
            client_id(self._mqtt_config.get("ClientName"), name),
        )
        for dp in self._names:
            logger.info("Subscribing to topic: %s", self._topic_set(dp))
            connection.subscribe(self._topic_set(dp), functools.partial(self._topic_callback, dp))
        try:
            connection.connect()
        except ConnectionError as exc:
            raise RuntimeError(f"EventLoopEngine failed to connect to MQTT: {exc}") from exc
        self._mqtt = connection

    def _topic_callback(self, dp_name: str, payload: bytes) -> None:
        datapack = self._datapack_from_str(dp_name, payload)
        if datapack is None:
            return
        with self._lock:
            queue = self._store[dp_name]
            if len(queue) >= self._store_capacity:
                logger.debug("Received datapack %s but its queue is full: discarded", dp_name)
                return
            queue.append(datapack)

    def _run_loop_cb(self) -> None:
        with self._lock:
            pending = {name: queue[:] for name, queue in self._store.items() if queue}
            for queue in self._store.values():
                queue.clear()
        for messages in pending.values():
            for message in messages[-1:] if self._do_process_last else messages:
                self._engine.set_datapack(message)
        self._engine.run_loop(self._timestep_ns)
        connection = self._mqtt
        if connection is not None:
            for name in self._names:
                connection.publish(self._topic_get(name), self._get_datapack_as_str(name))

    def _shutdown_cb(self) -> None:
        try:
            self._engine.shutdown()
        finally:
            if self._mqtt is not None:
                self._mqtt.close()
                self._mqtt = None

    def _datapack_from_str(self, dp_name: str, payload: bytes) -> Any:
        raise NotImplementedError

    def _get_datapack_as_str(self, dp_name: str) -> str | bytes:
        raise NotImplementedError

    def _topic_get(self, dp_name: str) -> str:
        return f"{self._engine.get_engine_name()}/get/{dp_name}"

    def _topic_set(self, dp_name: str) -> str:
        return f"{self._engine.get_engine_name()}/set/{dp_name}"


class JSONEventLoopEngine(EventLoopEngine):
    """JSON datapacks: ``{"name", "engine_name", "type", "data"}`` documents."""

    def _datapack_from_str(self, dp_name: str, payload: bytes) -> Any:
        try:
            message = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            logger.warning("Received datapack %s couldn't be unpacked: %s", dp_name, exc)
            return None
        if not isinstance(message, dict):
            logger.warning("Received datapack data %s is not a dictionary", dp_name)
            return None
        message["name"] = dp_name
        message.setdefault("engine_name", self._engine.get_engine_name())
        message.setdefault("type", JSON_DATAPACK_TYPE)
        message.setdefault("data", None)
        return message

    def _get_datapack_as_str(self, dp_name: str) -> str:
        return json.dumps(self._engine.get_datapack(dp_name))


class ProtoEventLoopEngine(EventLoopEngine):
    r"""Protobuf datapacks (``python_grpc`` engines): serialized ``EngineGrpc.DataPackMessage``\ s."""

    def _datapack_from_str(self, dp_name: str, payload: bytes) -> Any:
        from nrp_protobuf.engine_grpc_pb2 import DataPackMessage

        from nrp_core.engines.grpc import requests_from_messages

        try:
            message = DataPackMessage.FromString(payload)
        except Exception as exc:
            logger.warning("Received datapack %s couldn't be unpacked: %s", dp_name, exc)
            return None
        message.dataPackId.dataPackName = dp_name
        if not message.dataPackId.engineName:
            message.dataPackId.engineName = self._engine.get_engine_name()
        entry = requests_from_messages([message])[dp_name]
        if "proto" not in entry:
            logger.warning("Received datapack %s holds no protobuf message: discarded", dp_name)
            return None
        return {"name": dp_name, **entry}

    def _get_datapack_as_str(self, dp_name: str) -> bytes:
        from nrp_core.engines.grpc import datapack_messages

        entry = self._engine.get_datapack(dp_name)
        entry = {key: value for key, value in entry.items() if key != "name"}
        message: bytes = datapack_messages({dp_name: entry})[0].SerializeToString()
        return message


def parse_engine_config(path: str, engine_type: str = "python_json") -> dict[str, Any]:
    """Read an EventLoopEngine configuration and complete its ``EngineConfig`` as the engine type's.

    Raises:
        ValueError: not a JSON object, or no ``EngineConfig`` object.
        nrp_core.config.ConfigError: the engine config is invalid for ``engine_type``.
    """
    from nrp_core.config import complete_engine_config

    text = Path(path).read_text(encoding="utf-8")
    config = json.loads(text)
    if not isinstance(config, dict) or not isinstance(config.get("EngineConfig"), dict):
        raise ValueError(
            f"{path}: an EventLoopEngine configuration is an object with an 'EngineConfig' object"
        )
    for key, value in _DEFAULTS.items():
        config.setdefault(key, value)
    config.setdefault("MQTTConfig", {})
    engine = {"EngineType": engine_type, **config["EngineConfig"]}
    config["EngineConfig"] = complete_engine_config(engine, "$.EngineConfig")
    return config


def run_event_loop_engine_app(
    parse_config: Callable[[str], Any],
    wrapper_factory: Callable[[], EngineWrapper],
    engine_class: type[EventLoopEngine],
    argv: Sequence[str] | None = None,
) -> int:
    """The async engine command: parse options and config, run the engine's Event Loop; exit code."""
    from nrp_core.engines.channel import line_buffered_output

    line_buffered_output()  # engines started together share one console: whole lines only
    levels = {
        "critical": logging.CRITICAL,
        "fatal": logging.FATAL,
        "error": logging.ERROR,
        "warning": logging.WARNING,
        "warn": logging.WARNING,
        "info": logging.INFO,
        "debug": logging.DEBUG,
        "notset": logging.NOTSET,
    }
    parser = argparse.ArgumentParser(
        description="Run an engine on its own clock, exchanging datapacks over MQTT"
    )
    parser.add_argument("--config", required=True)
    parser.add_argument("--loglevel", default="info", type=str.lower, choices=levels)
    args = parser.parse_args(argv)
    try:
        config = parse_config(args.config)
        if isinstance(config, str):  # nrp-core's parse functions return the JSON text
            config = json.loads(config)
    except Exception as exc:
        print(f"{Path(sys.argv[0]).name}: {exc}", file=sys.stderr)
        return 1
    name = config["EngineConfig"].get("EngineName", "engine")
    logging.basicConfig(
        level=levels[args.loglevel],
        format=f"[%(asctime)s] [{name}] [%(levelname)s] %(message)s",
    )
    engine = engine_class(
        config["Timestep"],
        config["TimestepWarnThreshold"],
        config["DataQueueSize"],
        config["ProcessLastMsg"],
        config["EngineConfig"],
        config.get("MQTTConfig") or {},
        wrapper_factory(),
    )

    def stop(signum: int, _frame: Any) -> None:
        logger.info("Received stop signal")
        engine.stop_loop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        engine.initialize()
        engine.run_loop(float(config["Timeout"]))
    except Exception as exc:
        logger.error("%s", exc)
        engine.shutdown()
        return 1
    engine.shutdown()
    return 0
