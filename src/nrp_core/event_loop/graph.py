"""The computational graph: ports, the three node kinds, layering and one cycle of execution.

Semantics follow nrp-core's ``nrp_event_loop/computational_graph``:

- Nodes publish values through output ports; every subscribed input port calls its node back at
  once. A functional node's input port accepts one connection; output nodes' ports accept any
  number unless the node publishes from cache or has a compute period other than 1.
- :meth:`ComputationalGraph.configure` puts all input nodes in the first layer, all output nodes in
  the last and the functional nodes in between, each layer receiving edges only from earlier ones.
  Functional nodes left over sit on a cycle: an error. Nodes without any edge are never executed
  (a warning). Within a layer nodes run in registration order (nrp-core's order is that of their
  addresses in memory, i.e. unspecified).
- :meth:`ComputationalGraph.compute` runs one cycle: output nodes count the cycle (and in
  ``OUTPUT_DRIVEN`` mode mark the functional nodes feeding a due output node), then input nodes,
  the functional layers and the output nodes run, each according to its own policy.

Nodes and edges are added while the graph files load (:mod:`nrp_core.event_loop.loader`); every
node and edge remembers the file and line of the decorator that made it, so that graph errors point
at the user's code.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nrp_core.errors import NrpCoreError
from nrp_core.event_loop.policies import ExecMode, node_policies

__all__ = [
    "NULL",
    "ComputationalGraph",
    "ComputationalNode",
    "GraphError",
    "InputNode",
    "InputPort",
    "OutputNode",
    "OutputPort",
    "Where",
    "caller",
    "current_graph",
]

logger = logging.getLogger("nrp_core.event_loop")

INPUT = "Input"
FUNCTIONAL = "Functional"
OUTPUT = "Output"

_PACKAGE_DIR = str(Path(__file__).parent)


@dataclass(frozen=True)
class Where:
    """The user file and line a node or edge was declared at."""

    file: str = ""
    line: int = 0

    def __str__(self) -> str:
        return f"{Path(self.file).name}:{self.line}" if self.file else "<unknown>"


def caller() -> Where:
    """The innermost frame outside this package: the decorator's line in the user's file."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return Where()
    return Where(frame.f_code.co_filename, frame.f_lineno)


class GraphError(NrpCoreError):
    """An invalid graph: unknown address, cycle, port connected twice, duplicate node, bad decorator.

    Attributes:
        where: the file and line of the offending decorator (may be unknown).
    """

    def __init__(self, message: str, where: Where | None = None) -> None:
        self.where = where or Where()
        self.message = message
        super().__init__(f"{self.where}: {message}" if self.where.file else message)


# --------------------------------------------------------------------------------------------------
# Ports


class _Null:
    """What an input node with the ``clear`` cache policy publishes: nrp-core's null pointer.

    Receivers see ``None``, but unlike a ``None`` returned by a functional node (a Python object in
    nrp-core, hence a new message) it does not count as new input.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL"


NULL = _Null()


class OutputPort:
    """Publishes values to every subscribed input port."""

    __slots__ = ("id", "node", "subscribers")

    def __init__(self, port_id: str, node: ComputationalNode) -> None:
        self.id = port_id
        self.node = node
        self.subscribers: list[InputPort] = []

    def publish(self, value: Any) -> None:
        for port in self.subscribers:
            port.callback(value)


class InputPort:
    """Receives values from at most ``max_connections`` output ports (0: any number)."""

    __slots__ = ("callback", "id", "max_connections", "node", "sources")

    def __init__(
        self, port_id: str, node: ComputationalNode, callback: Callable[[Any], None], max_connections: int
    ) -> None:
        self.id = port_id
        self.node = node
        self.callback = callback
        self.max_connections = max_connections
        self.sources: list[OutputPort] = []

    def subscribe_to(self, source: OutputPort, where: Where) -> None:
        if self.max_connections and len(self.sources) >= self.max_connections:
            already = ", ".join(f"'/{s.node.id}/{s.id}'" for s in self.sources)
            raise GraphError(
                f"port '{self.id}' of node '{self.node.id}' is already connected to {already} and accepts "
                f"{self.max_connections} connection(s): cannot connect it to '/{source.node.id}/{source.id}'",
                where,
            )
        self.sources.append(source)
        source.subscribers.append(self)


# --------------------------------------------------------------------------------------------------
# Nodes


class ComputationalNode:
    """Base of all nodes: id, kind, the decorator location and the per-cycle execution flag."""

    kind = ""
    type_name = ""

    def __init__(self, node_id: str, where: Where | None = None) -> None:
        self.id = node_id
        self.where = where or Where()
        self.do_compute = False

    def wants_compute(self) -> bool:
        return self.do_compute

    def configure(self) -> None:
        """Called once when the graph is configured."""

    def compute(self) -> None:
        """Called when the node executes in a cycle."""

    def cycle_start(self) -> None:
        """Called on output nodes at the start of every cycle."""

    def graph_loaded(self, graph: ComputationalGraph) -> None:
        """Called once after all graph files have loaded (before :meth:`configure`)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r}>"


class _PortHandle:
    """An input node's port: its single and list output ports and the messages to publish."""

    __slots__ = ("data", "list_port", "queue_size", "single_port")

    def __init__(self, port_id: str, node: ComputationalNode, queue_size: int) -> None:
        self.single_port = OutputPort(port_id, node)
        self.list_port = OutputPort(port_id, node)
        self.data: list[Any] = []
        self.queue_size = queue_size

    def add(self, message: Any) -> bool:
        if len(self.data) < self.queue_size:
            self.data.append(message)
            return True
        logger.info("port '%s' reached its maximum size: message dropped", self.single_port.id)
        return False


class InputNode(ComputationalNode):
    """Brings messages into the graph; subclasses fill ports in :meth:`update_port_data`.

    ``publish_policy`` ``last`` publishes a port's last message, ``all`` the list of messages
    received since the previous cycle; ``cache_policy`` ``clear`` publishes ``None`` for a port
    without new messages, ``keep`` publishes nothing (receivers keep the last value).
    """

    kind = INPUT

    def __init__(
        self,
        node_id: str,
        publish_policy: Any = node_policies.input_node.msg_publish.last,
        cache_policy: Any = node_policies.input_node.msg_cache.keep,
        queue_size: int = 10,
        where: Where | None = None,
    ) -> None:
        super().__init__(node_id, where)
        self.publish_policy = publish_policy
        self.cache_policy = cache_policy
        self.queue_size = queue_size
        self.ports: dict[str, _PortHandle] = {}

    def register_output(self, port_id: str) -> _PortHandle:
        handle = self.ports.get(port_id)
        if handle is None:
            handle = self.ports[port_id] = _PortHandle(port_id, self, self.queue_size)
        return handle

    def output_port(self, port_id: str) -> OutputPort:
        """The port a functional node input subscribes to, according to the publish policy."""
        handle = self.ports[port_id]
        if self.publish_policy is node_policies.input_node.msg_publish.all:
            return handle.list_port
        return handle.single_port

    def update_port_data(self, port_id: str, handle: _PortHandle) -> bool:
        """Put the new messages of ``port_id`` into ``handle.data``; True if there are any."""
        raise NotImplementedError

    def compute(self) -> None:
        publish_all = self.publish_policy is node_policies.input_node.msg_publish.all
        clear = self.cache_policy is node_policies.input_node.msg_cache.clear
        for port_id, handle in self.ports.items():
            if self.update_port_data(port_id, handle):
                if not handle.data:
                    continue
                if publish_all:
                    handle.list_port.publish(list(handle.data))
                else:
                    handle.single_port.publish(handle.data[-1])
            elif clear:
                handle.single_port.publish(NULL)
                handle.list_port.publish(NULL)
                handle.data.clear()


class OutputNode(ComputationalNode):
    """Sends messages out of the graph; subclasses implement :meth:`send_single`.

    ``compute_period`` N runs the node every N-th cycle (0: only when flagged from outside, as the
    FTI loop does for the engines it synchronizes); ``publish_from_cache`` re-sends the last
    messages in cycles without new ones.
    """

    kind = OUTPUT

    def __init__(
        self,
        node_id: str,
        publish_from_cache: bool = False,
        max_port_connections: int = 0,
        compute_period: int = 1,
        where: Where | None = None,
    ) -> None:
        super().__init__(node_id, where)
        self.publish_from_cache = bool(publish_from_cache)
        if (self.publish_from_cache or compute_period != 1) and max_port_connections != 1:
            max_port_connections = 1
        self.max_port_connections = max_port_connections
        self.compute_period = int(compute_period)
        self.ports: dict[str, InputPort] = {}
        self.stored: dict[str, list[Any]] = {}
        self.n_loop = 0

    def input_port(self, port_id: str) -> InputPort:
        port = self.ports.get(port_id)
        if port is None:

            def store(value: Any, port_id: str = port_id) -> None:
                self.store(port_id, value)

            port = self.ports[port_id] = InputPort(port_id, self, store, self.max_port_connections)
            self.stored[port_id] = []
        return port

    def set_compute_period(self, period: int) -> None:
        if self.max_port_connections != 1 and period != 1:
            logger.info(
                "node '%s': compute period %d rejected, its ports accept several connections", self.id, period
            )
            return
        self.compute_period = period

    def wants_compute(self) -> bool:
        period = self.compute_period
        return self.do_compute or (period != 0 and (self.n_loop - 1) % period == 0)

    def cycle_start(self) -> None:
        self.n_loop += 1

    def store(self, port_id: str, value: Any) -> None:
        if value is None or value is NULL:
            return
        stored = self.stored[port_id]
        if self.max_port_connections == 1 and stored:
            stored[-1] = value
        else:
            stored.append(value)

    def compute(self) -> None:
        if not self.wants_compute():
            return
        for port_id, messages in self.stored.items():
            for message in messages:
                self.send_single(port_id, message)
            if not self.publish_from_cache:
                messages.clear()

    def send_single(self, port_id: str, value: Any) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------------------------------
# The graph


class ComputationalGraph:
    """Nodes, edges, layers and the execution of one cycle.

    Args:
        exec_mode: :class:`ExecMode` (``ALL_NODES`` in the Event Loop by default, ``OUTPUT_DRIVEN``
            when the FTI loop drives the graph).
    """

    def __init__(self, exec_mode: ExecMode = ExecMode.ALL_NODES) -> None:
        self.exec_mode = exec_mode
        self.nodes: dict[str, ComputationalNode] = {}
        self._order: dict[ComputationalNode, int] = {}
        self._in: dict[ComputationalNode, list[ComputationalNode]] = {}
        self._out: dict[ComputationalNode, list[ComputationalNode]] = {}
        self.input_layer: list[ComputationalNode] = []
        self.layers: list[list[ComputationalNode]] = []
        self.output_layer: list[ComputationalNode] = []
        self.configured = False
        self.cycles = 0
        # Set by the loader: the MQTT connection MQTT nodes use (None: no MQTTNode configured).
        self.mqtt: Any = None
        # Set by the loader: the directory it put on sys.path (None if it was there already).
        self.added_path: str | None = None

    # -- building ----------------------------------------------------------------------------------

    def register_node(self, node: ComputationalNode) -> ComputationalNode:
        """Add ``node``, or return the node of the same id and kind already there (not functional)."""
        if self.configured:
            raise GraphError(f"cannot add node '{node.id}': the graph is already configured", node.where)
        existing = self.nodes.get(node.id)
        if existing is None:
            self.nodes[node.id] = node
            self._order[node] = len(self._order)
            return node
        if existing.kind != node.kind or type(existing) is not type(node):
            raise GraphError(
                f"duplicated node name '{node.id}' in nodes of type '{node.type_name or node.kind}' and "
                f"'{existing.type_name or existing.kind}' (declared at {existing.where})",
                node.where,
            )
        if node.kind == FUNCTIONAL:
            raise GraphError(
                f"a functional node named '{node.id}' already exists (declared at {existing.where})",
                node.where,
            )
        return existing

    def register_edge(self, source: OutputPort, target: InputPort, where: Where) -> None:
        """Connect ``source`` to ``target`` and add the edge between their nodes."""
        a, b = source.node, target.node
        if self.configured:
            raise GraphError("cannot add an edge: the graph is already configured", where)
        if a is b:
            raise GraphError(f"edge from node '{a.id}' to itself is not allowed", where)
        if a.kind == OUTPUT:
            raise GraphError(f"output node '{a.id}' cannot be the source of an edge", where)
        if b.kind == INPUT:
            raise GraphError(f"input node '{b.id}' cannot be the target of an edge", where)
        for node in (a, b):
            if node.id not in self.nodes or self.nodes[node.id] is not node:
                raise GraphError(f"node '{node.id}' is not registered in the graph", where)
        target.subscribe_to(source, where)
        self._out.setdefault(a, [])
        self._in.setdefault(a, [])
        self._out.setdefault(b, [])
        self._in.setdefault(b, [])
        if b not in self._out[a]:
            self._out[a].append(b)
            self._in[b].append(a)

    def in_neighbors(self, node: ComputationalNode) -> list[ComputationalNode]:
        return self._in.get(node, [])

    def out_neighbors(self, node: ComputationalNode) -> list[ComputationalNode]:
        return self._out.get(node, [])

    def node(self, node_id: str) -> ComputationalNode | None:
        return self.nodes.get(node_id)

    def nodes_of(self, cls: type) -> Iterator[Any]:
        return (node for node in self.nodes.values() if isinstance(node, cls))

    # -- configuring -------------------------------------------------------------------------------

    def loaded(self) -> None:
        """All files are loaded: let nodes resolve the edges they were asked for by address."""
        for node in list(self.nodes.values()):
            node.graph_loaded(self)

    def configure(self) -> None:
        """Configure every node and compute the layers.

        Raises:
            GraphError: the graph has a cycle (naming its nodes and their declarations).
        """
        if self.configured:
            raise GraphError("the graph is already configured")
        for node in self.nodes.values():
            node.configure()
        in_graph = sorted(self._in, key=self._order.__getitem__)
        visited: set[ComputationalNode] = set()
        self.input_layer = [n for n in in_graph if n.kind == INPUT]
        self.output_layer = [n for n in in_graph if n.kind == OUTPUT]
        visited.update(self.input_layer, self.output_layer)
        layer = [
            n for n in in_graph if n.kind == FUNCTIONAL and all(i.kind == INPUT for i in self.in_neighbors(n))
        ]
        visited.update(layer)
        self.layers = []
        while layer:
            self.layers.append(layer)
            candidates = {m for n in layer for m in self.out_neighbors(n)}
            layer = []
            for m in sorted(candidates, key=self._order.__getitem__):
                if m.kind == OUTPUT or m in visited:
                    continue
                if all(i.kind == INPUT or i in visited for i in self.in_neighbors(m)):
                    layer.append(m)
            visited.update(layer)
        left = [n for n in in_graph if n not in visited]
        if left:
            listing = ", ".join(f"'{n.id}' ({n.where})" for n in left)
            raise GraphError(
                f"cycle(s) found in the graph, cycles are not supported: {listing}", left[0].where
            )
        for node in self.nodes.values():
            if node not in self._in:
                logger.warning(
                    'Graph node "%s" (%s) is disconnected. It will not be executed.', node.id, node.where
                )
        self.configured = True

    # -- running -----------------------------------------------------------------------------------

    def compute(self) -> None:
        """Execute one cycle."""
        if not self.configured:
            raise GraphError("the graph is not configured")
        output_layer = self.output_layer
        if self.exec_mode is ExecMode.OUTPUT_DRIVEN:
            for node in output_layer:
                node.cycle_start()
                if node.wants_compute():
                    self._propagate_back(node)
            for node in self.input_layer:
                node.compute()
            for layer in self.layers:
                for node in layer:
                    if node.do_compute:
                        node.compute()
                        node.do_compute = False
            for node in output_layer:
                if node.wants_compute():
                    node.compute()
                    node.do_compute = False
        else:
            for node in output_layer:
                node.cycle_start()
            for node in self.input_layer:
                node.compute()
            for layer in self.layers:
                for node in layer:
                    node.compute()
            for node in output_layer:
                node.compute()
        self.cycles += 1

    def _propagate_back(self, node: ComputationalNode) -> None:
        for source in self.in_neighbors(node):
            if not source.do_compute:
                source.do_compute = True
                self._propagate_back(source)

    def shutdown(self) -> None:
        """Release resources held by nodes (MQTT subscriptions are dropped with the connection)."""
        mqtt = self.mqtt
        self.mqtt = None
        if mqtt is not None:
            mqtt.close()


# --------------------------------------------------------------------------------------------------
# The graph being loaded


_building = threading.local()


def current_graph(where: Where) -> ComputationalGraph:
    """The graph whose files are loading in this thread.

    Raises:
        GraphError: no graph is loading (decorators only work in ``ComputationalGraph`` files).
    """
    graph = getattr(_building, "graph", None)
    if graph is None:
        raise GraphError(
            "computational graph decorators only work in the files listed in 'ComputationalGraph' "
            "(or inside nrp_core.event_loop.building())",
            where,
        )
    return graph


class building:  # noqa: N801 - used as a context manager, like open()
    """``with building(graph):`` makes decorators add nodes and edges to ``graph`` in this thread."""

    def __init__(self, graph: ComputationalGraph) -> None:
        self.graph = graph
        self._previous: ComputationalGraph | None = None

    def __enter__(self) -> ComputationalGraph:
        self._previous = getattr(_building, "graph", None)
        _building.graph = self.graph
        return self.graph

    def __exit__(self, *exc: object) -> None:
        _building.graph = self._previous
