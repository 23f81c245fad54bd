"""Loading ``ComputationalGraph`` files into a configured :class:`ComputationalGraph`.

All files run in one shared namespace (as nrp-core's ``createPythonGraphFromConfig``), in config
order, while the graph is the current one of this thread, so that the decorators they use add
nodes and edges to it. Then edges requested by address are made, the graph is configured (layers,
cycle check) and MQTT nodes get the experiment's MQTT connection.
"""

from __future__ import annotations

import builtins
import logging
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nrp_core.errors import user_location
from nrp_core.event_loop.graph import ComputationalGraph, GraphError, Where, building
from nrp_core.event_loop.mqtt import (
    DEFAULT_CLIENT_NAME,
    InputMQTTNode,
    MQTTConnection,
    OutputMQTTNode,
    broker_address,
    client_id,
)
from nrp_core.event_loop.policies import ExecMode

__all__ = ["connect_mqtt", "load_graph"]

logger = logging.getLogger("nrp_core.event_loop")

# Modules of features we do not have: importing them fails with a message naming the feature.
_UNSUPPORTED_MODULES = {
    "nrp_core.data.nrp_protobuf": "protobuf datapacks and messages are",
    "nrp_core.data.nrp_ros": "ROS messages are",
    "pyNN": "SpiNNaker (pyNN.spiNNaker) is",
    "spynnaker": "SpiNNaker is",
    "rospy": "ROS is",
}


def _exec_file(path: Path, namespace: dict[str, Any], graph: ComputationalGraph) -> None:
    try:
        source = path.read_text()
    except OSError as exc:
        raise GraphError(f"loading of computational graph file '{path.name}' failed: {exc.strerror}") from exc
    namespace["__file__"] = str(path)
    try:
        with building(graph):
            exec(compile(source, str(path), "exec"), namespace)
    except GraphError:
        raise
    except ModuleNotFoundError as exc:
        feature = _unsupported_module(exc.name or "")
        if feature is None:
            raise _load_error(path, exc) from exc
        file, line = user_location(exc)
        raise GraphError(
            f"'{path.name}' imports {exc.name}: {feature} not supported", Where(file or str(path), line)
        ) from exc
    except Exception as exc:
        raise _load_error(path, exc) from exc
    logger.info('Loaded computation graph file "%s"', path.name)


def _unsupported_module(name: str) -> str | None:
    for prefix, feature in _UNSUPPORTED_MODULES.items():
        if name == prefix or name.startswith(prefix + "."):
            return feature
    return None


def _load_error(path: Path, exc: Exception) -> GraphError:
    file, line = user_location(exc)
    tb = "".join(traceback.format_exception(exc)).rstrip()
    return GraphError(
        f"loading of computational graph file '{path.name}' failed: {type(exc).__name__}: {exc}\n{tb}",
        Where(file or str(path), line),
    )


def connect_mqtt(graph: ComputationalGraph, mqtt_config: Mapping[str, Any] | None) -> None:
    """Give the graph's MQTT nodes a connection (``mqtt_config``: the ``MQTTNode`` entry, or None)."""
    nodes = [n for n in graph.nodes.values() if isinstance(n, (InputMQTTNode, OutputMQTTNode))]
    connection = None
    if mqtt_config is not None and nodes:
        connection = MQTTConnection(
            broker_address(mqtt_config.get("MQTTBroker")),
            client_id(mqtt_config.get("ClientName"), DEFAULT_CLIENT_NAME),
        )
        for node in nodes:
            if isinstance(node, InputMQTTNode):
                node.attach(connection)
        connection.connect()
        graph.mqtt = connection
    for node in nodes:
        if isinstance(node, OutputMQTTNode) or connection is None:
            node.attach(connection)


def load_graph(
    files: Sequence[str],
    experiment_dir: str | Path,
    exec_mode: ExecMode = ExecMode.ALL_NODES,
    mqtt_config: Mapping[str, Any] | None = None,
) -> ComputationalGraph:
    """Load, connect and configure the graph of ``files`` (relative to ``experiment_dir``).

    The experiment directory is put on ``sys.path`` (``graph.added_path`` says if it was added).

    Raises:
        GraphError: a missing file, an error while loading one (with its file and line), an
            unknown address, a cycle, a port connected twice, a duplicate node.
        ConnectionError: the graph has MQTT nodes and the broker does not answer.
    """
    directory = Path(experiment_dir).resolve()
    graph = ComputationalGraph(exec_mode)
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
        graph.added_path = str(directory)
    namespace: dict[str, Any] = {"__name__": "__nrp_graph__", "__builtins__": builtins}
    try:
        for file_name in files:
            path = directory / file_name
            if not path.is_file():
                raise GraphError(
                    f"loading of computational graph file '{file_name}' failed: the file doesn't exist"
                )
            _exec_file(path, namespace, graph)
        graph.loaded()
        graph.configure()
        connect_mqtt(graph, mqtt_config)
    except BaseException:
        graph.shutdown()
        if graph.added_path is not None and graph.added_path in sys.path:
            sys.path.remove(graph.added_path)
        raise
    return graph
