"""Functional, engine and time nodes and the decorators that declare them.

``@FunctionalNode(name, outputs, exec_policy)`` turns a function into a node whose inputs are the
function's arguments; the decorators above it connect those inputs and outputs:
``@FromFunctionalNode(keyword, "/node/output")``, ``@FromEngine(keyword, "/engine/datapack")``,
``@ToEngine(keyword, "/engine")``, ``@Clock(keyword)`` and ``@Iteration(keyword)``. Engine nodes are
called ``<engine>_input`` and ``<engine>_output``; the time nodes ``clock_node`` and
``iteration_node``.
"""

from __future__ import annotations

import inspect
import logging
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from nrp_core.datapacks import DataPackInterface
from nrp_core.errors import user_location
from nrp_core.event_loop.graph import (
    FUNCTIONAL,
    NULL,
    ComputationalGraph,
    ComputationalNode,
    GraphError,
    InputNode,
    InputPort,
    OutputNode,
    OutputPort,
    Where,
    _PortHandle,
    caller,
    current_graph,
)
from nrp_core.event_loop.policies import node_policies
from nrp_core.functions import FunctionError

__all__ = [
    "Clock",
    "FromEngine",
    "FromFunctionalNode",
    "FunctionalNode",
    "InputClockNode",
    "InputDummy",
    "InputDummyNode",
    "InputEngineNode",
    "InputIterationNode",
    "Iteration",
    "OutputDummy",
    "OutputDummyNode",
    "OutputEngineNode",
    "PythonFunctionalNode",
    "ToEngine",
    "parse_address",
]

logger = logging.getLogger("nrp_core.event_loop")


def parse_address(address: str, where: Where, has_port: bool = True) -> tuple[str, str]:
    """``"/node/port"`` -> ``(node, port)``; ``"/node"`` -> ``(node, node)`` when ``has_port`` is False."""
    if not isinstance(address, str) or not address.startswith("/"):
        raise GraphError(
            f"invalid address {address!r}: computational graph addresses must start with '/'", where
        )
    rest = address[1:]
    if has_port:
        node, sep, port = rest.partition("/")
        if not sep or not node or not port:
            raise GraphError(f"invalid address {address!r}: the expected format is '/node_id/port_id'", where)
        return node, port
    node = rest.split("/", 1)[0]
    if not node:
        raise GraphError(f"invalid address {address!r}: the expected format is '/node_id'", where)
    return node, node


# --------------------------------------------------------------------------------------------------
# Functional nodes


class FunctionalNode(ComputationalNode):
    """``@FunctionalNode(name, outputs, exec_policy)``: a node running the decorated function.

    The function's positional parameters are the node's inputs (``None`` until a value arrives);
    it returns ``None`` (publish nothing) or a list with one value per declared output (a ``None``
    in it is published like any value). With ``exec_policy`` ``on_new_message`` (the default) it
    runs only in cycles in which an input received a message (not an input node's cleared cache);
    with ``always`` in every cycle the graph executes it.
    """

    kind = FUNCTIONAL
    type_name = "FunctionalNode"

    def __init__(
        self,
        name: str,
        outputs: Iterable[str] = (),
        exec_policy: Any = node_policies.functional_node.exec_policy.on_new_message,
    ) -> None:
        where = caller()
        if not isinstance(name, str) or not name:
            raise GraphError("FunctionalNode needs a non-empty 'name'", where)
        if isinstance(outputs, str):
            raise GraphError(
                f"FunctionalNode '{name}': 'outputs' must be a list of names, not a string", where
            )
        if not isinstance(exec_policy, node_policies.functional_node.exec_policy):
            raise GraphError(
                f"FunctionalNode '{name}': exec_policy must be a node_policies.functional_node.exec_policy, "
                f"got {exec_policy!r}",
                where,
            )
        super().__init__(name, where)
        self.output_ids = [str(o) for o in outputs]
        if len(set(self.output_ids)) != len(self.output_ids):
            raise GraphError(
                f"FunctionalNode '{name}': output names must be unique, got {self.output_ids}", where
            )
        self.exec_policy = exec_policy
        self.fn: Callable[..., Any] | None = None
        self.input_ids: list[str] = []
        self.inputs: dict[str, InputPort] = {}
        self.values: dict[str, Any] = {}
        self.outputs: dict[str, OutputPort] = {o: OutputPort(o, self) for o in self.output_ids}
        self.has_new = False
        self._f2f: list[tuple[str, str, Where]] = []
        self._graph: ComputationalGraph | None = None

    # -- set-up ------------------------------------------------------------------------------------

    def __call__(self, fn: Callable[..., Any]) -> FunctionalNode:
        if self.fn is not None:
            raise GraphError(f"FunctionalNode '{self.id}' is already set up with a function", caller())
        if not callable(fn):
            raise GraphError(
                f"FunctionalNode '{self.id}' decorates a function, got {type(fn).__name__}", self.where
            )
        try:
            self.input_ids = list(inspect.getfullargspec(fn).args)
        except TypeError as exc:
            raise GraphError(f"FunctionalNode '{self.id}': {exc}", self.where) from None
        self.fn = fn
        self.values = dict.fromkeys(self.input_ids)
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", self.id)
        graph = current_graph(self.where)
        graph.register_node(self)
        self._graph = graph
        return self

    @property
    def graph(self) -> ComputationalGraph:
        assert self._graph is not None
        return self._graph

    def input_port(self, keyword: str, where: Where) -> InputPort:
        """The input port of argument ``keyword`` (created on first use; one connection only)."""
        if keyword not in self.input_ids:
            raise GraphError(
                f"'{keyword}' does not match any of the declared input arguments of node '{self.id}' "
                f"({', '.join(self.input_ids) or 'none'})",
                where,
            )
        port = self.inputs.get(keyword)
        if port is None:

            def receive(value: Any, keyword: str = keyword) -> None:
                if value is NULL:  # an input node cleared its cache: no new message
                    self.values[keyword] = None
                else:
                    self.values[keyword] = value
                    self.has_new = True

            port = self.inputs[keyword] = InputPort(keyword, self, receive, 1)
        return port

    def output_port(self, keyword: str, where: Where) -> OutputPort:
        port = self.outputs.get(keyword)
        if port is None:
            raise GraphError(
                f"node '{self.id}' has no declared output '{keyword}' "
                f"(outputs: {', '.join(self.output_ids) or 'none'})",
                where,
            )
        return port

    def request_f2f_edge(self, keyword: str, address: str, where: Where) -> None:
        self.input_port(keyword, where)  # fail early on an unknown keyword
        self._f2f.append((keyword, address, where))

    def graph_loaded(self, graph: ComputationalGraph) -> None:
        requests, self._f2f = self._f2f, []
        for keyword, address, where in requests:
            node_id, port_id = parse_address(address, where)
            source = graph.node(node_id)
            if not isinstance(source, FunctionalNode):
                raise GraphError(
                    f"while connecting '{keyword}' of node '{self.id}' to '{address}': there is no "
                    f"functional node named '{node_id}' in the computational graph",
                    where,
                )
            if port_id not in source.outputs:
                raise GraphError(
                    f"while connecting '{keyword}' of node '{self.id}' to '{address}': functional node "
                    f"'{node_id}' has no declared output '{port_id}' "
                    f"(outputs: {', '.join(source.output_ids) or 'none'})",
                    where,
                )
            graph.register_edge(source.outputs[port_id], self.input_port(keyword, where), where)

    def configure(self) -> None:
        for keyword in self.input_ids:
            if keyword not in self.inputs:
                logger.warning(
                    'In python functional node "%s": input argument "%s" is not connected', self.id, keyword
                )
        for output_id, port in self.outputs.items():
            if not port.subscribers:
                logger.warning(
                    'In python functional node "%s": output "%s" is not connected', self.id, output_id
                )

    # -- running -----------------------------------------------------------------------------------

    def _error(self, message: str, exc: BaseException | None = None) -> FunctionError:
        file, line = self.where.file, self.where.line
        tb = ""
        if exc is not None:
            user_file, user_line = user_location(exc)
            file, line = user_file or file, user_line or line
            tb = "".join(traceback.format_exception(exc))
        return FunctionError(self.id, file, line, message, tb)

    def compute(self) -> None:
        if self.exec_policy is node_policies.functional_node.exec_policy.always or self.has_new:
            fn = self.fn
            assert fn is not None
            try:
                result = fn(**self.values)
            except Exception as exc:
                raise self._error(f"{type(exc).__name__}: {exc}", exc) from exc
            if result is not None:
                declared = len(self.output_ids)
                if not isinstance(result, (list, tuple)):
                    raise self._error(
                        f"Functional Node '{self.id}' returned {type(result).__name__}: it must return "
                        f"None or a list with one element per declared output ({declared})"
                    )
                if len(result) != declared:
                    raise self._error(
                        f"Functional Node '{self.id}' has {declared} declared outputs, "
                        f"but returns {len(result)} elements"
                    )
                for port, value in zip(self.outputs.values(), result, strict=True):
                    port.publish(value)
        self.has_new = False


PythonFunctionalNode = FunctionalNode
"""nrp-core's C++ class name of Python functional nodes."""


def _functional_node(obj: Any, decorator: str, where: Where) -> FunctionalNode:
    if not isinstance(obj, FunctionalNode) or obj.fn is None:
        raise GraphError(
            f"@{decorator} must be placed above a @FunctionalNode decorator, got {type(obj).__name__}", where
        )
    return obj


class FromFunctionalNode:
    """``@FromFunctionalNode(keyword, "/node/output")``: connect input ``keyword`` to another node's output.

    The edge is made once every graph file has loaded, so the other node may be declared later.
    """

    def __init__(self, keyword: str, address: str) -> None:
        self.keyword = keyword
        self.address = address
        self.where = caller()

    def __call__(self, obj: Any) -> Any:
        node = _functional_node(obj, "FromFunctionalNode", self.where)
        parse_address(self.address, self.where)
        node.request_f2f_edge(self.keyword, self.address, self.where)
        return node


class _InputEdge:
    """Base of decorators creating (or reusing) an input node and connecting one of its ports."""

    decorator = ""

    def __init__(
        self, keyword: str, node_id: str, port_id: str, publish_policy: Any, cache_policy: Any
    ) -> None:
        self.keyword = keyword
        self.node_id = node_id
        self.port_id = port_id
        self.where = caller()
        if not isinstance(publish_policy, node_policies.input_node.msg_publish):
            raise GraphError(
                f"publish_policy must be a node_policies.input_node.msg_publish, got {publish_policy!r}",
                self.where,
            )
        if not isinstance(cache_policy, node_policies.input_node.msg_cache):
            raise GraphError(
                f"cache_policy must be a node_policies.input_node.msg_cache, got {cache_policy!r}", self.where
            )
        self.publish_policy = publish_policy
        self.cache_policy = cache_policy

    def make_node(self) -> InputNode:
        raise NotImplementedError

    def __call__(self, obj: Any) -> Any:
        fn_node = _functional_node(obj, self.decorator, self.where)
        graph = fn_node.graph
        node = graph.register_node(self.make_node())
        assert isinstance(node, InputNode)
        node.publish_policy = self.publish_policy
        node.cache_policy = self.cache_policy
        node.register_output(self.port_id)
        graph.register_edge(
            node.output_port(self.port_id), fn_node.input_port(self.keyword, self.where), self.where
        )
        return fn_node


class _OutputEdge:
    """Base of decorators creating (or reusing) an output node and connecting an output to it."""

    decorator = ""

    def __init__(
        self, keyword: str, node_id: str, port_id: str, publish_from_cache: bool, compute_period: int
    ) -> None:
        self.keyword = keyword
        self.node_id = node_id
        self.port_id = port_id
        self.publish_from_cache = publish_from_cache
        self.compute_period = compute_period
        self.where = caller()

    def make_node(self) -> OutputNode:
        raise NotImplementedError

    def __call__(self, obj: Any) -> Any:
        fn_node = _functional_node(obj, self.decorator, self.where)
        graph = fn_node.graph
        node = graph.register_node(self.make_node())
        assert isinstance(node, OutputNode)
        port = node.input_port(self.port_id)
        if port.max_connections and len(port.sources) >= port.max_connections:
            reason = "the maximum number of connections of this port has been reached"
            if node.compute_period != 1:
                reason = "the node has a compute period other than one and accepts one connection per port"
            elif node.publish_from_cache:
                reason = "the node publishes from cache and accepts one connection per port"
            raise GraphError(
                f"cannot connect output '{self.keyword}' of node '{fn_node.id}' to port '{self.port_id}' of "
                f"output node '{node.id}': {reason}",
                self.where,
            )
        graph.register_edge(fn_node.output_port(self.keyword, self.where), port, self.where)
        return fn_node


# --------------------------------------------------------------------------------------------------
# Engine nodes


class InputEngineNode(InputNode):
    """``<engine>_input``: publishes the engine's datapacks that the loop hands it after a step.

    An empty datapack replaces nothing but an empty one (nrp-core's rule): the port keeps
    publishing the last non-empty datapack it got.
    """

    type_name = "FromEngine"

    def __init__(self, node_id: str, engine_name: str, where: Where | None = None) -> None:
        super().__init__(node_id, where=where)
        self.engine_name = engine_name
        self._lock = threading.Lock()
        self._temp: dict[str, DataPackInterface] = {}
        self._store: dict[str, DataPackInterface] = {}

    def requested(self) -> list[str]:
        """The names of the datapacks the node needs from its engine."""
        return list(self.ports)

    def set_datapacks(self, datapacks: Iterable[DataPackInterface]) -> None:
        with self._lock:
            for datapack in datapacks:
                name = datapack.name
                if name in self.ports and (name not in self._temp or not datapack.isEmpty()):
                    self._temp[name] = datapack

    def update_port_data(self, port_id: str, handle: _PortHandle) -> bool:
        with self._lock:
            datapack = self._temp.get(port_id)
            if datapack is not None and (port_id not in self._store or not datapack.isEmpty()):
                handle.data.clear()
                self._store[port_id] = datapack
                handle.add(datapack)
                del self._temp[port_id]
                return True
        return False


class OutputEngineNode(OutputNode):
    """``<engine>_output``: collects the datapacks to send to its engine (one copy per name)."""

    type_name = "ToEngine"

    def __init__(self, node_id: str, engine_name: str, where: Where | None = None) -> None:
        super().__init__(
            node_id, publish_from_cache=False, max_port_connections=1, compute_period=1, where=where
        )
        self.engine_name = engine_name
        self._lock = threading.Lock()
        self._datapacks: dict[str, DataPackInterface] = {}

    def send_single(self, port_id: str, value: Any) -> None:
        if not isinstance(value, DataPackInterface):
            raise GraphError(
                f"output engine node '{self.id}' received {type(value).__name__}: "
                "ToEngine outputs must be datapacks",
                self.where,
            )
        if value.engine_name != self.engine_name:
            logger.info(
                "In OutputEngineNode '%s': received datapack '%s' linked to engine '%s'; this node accepts "
                "only datapacks of engine '%s'",
                self.engine_name,
                value.name,
                value.engine_name,
                self.engine_name,
            )
            return
        with self._lock:
            # A copy, as nrp-core's clone(): later changes by the node's function do not leak.
            self._datapacks[value.name] = value._deep_copy()

    def take_datapacks(self) -> list[DataPackInterface]:
        """The datapacks collected since the last call (nrp-core ``getDataPacks``)."""
        with self._lock:
            datapacks = list(self._datapacks.values())
            self._datapacks.clear()
        return datapacks


class FromEngine(_InputEdge):
    """``@FromEngine(keyword, "/engine/datapack", cache_policy=keep)``: an engine datapack as input."""

    decorator = "FromEngine"

    def __init__(
        self, keyword: str, address: str, cache_policy: Any = node_policies.input_node.msg_cache.keep
    ) -> None:
        where = caller()
        engine, datapack = parse_address(address, where)
        super().__init__(
            keyword, f"{engine}_input", datapack, node_policies.input_node.msg_publish.last, cache_policy
        )
        self.engine_name = engine
        self.where = where

    def make_node(self) -> InputNode:
        return InputEngineNode(self.node_id, self.engine_name, self.where)


class ToEngine(_OutputEdge):
    """``@ToEngine(keyword, "/engine")``: output ``keyword`` (a datapack) is sent to the engine."""

    decorator = "ToEngine"
    _ports = 0

    def __init__(self, keyword: str, address: str) -> None:
        where = caller()
        engine, _ = parse_address(address, where, has_port=False)
        ToEngine._ports += 1
        super().__init__(keyword, f"{engine}_output", f"anonymous_port{ToEngine._ports}", False, 1)
        self.engine_name = engine
        self.where = where

    def make_node(self) -> OutputNode:
        return OutputEngineNode(self.node_id, self.engine_name, self.where)


# --------------------------------------------------------------------------------------------------
# Time nodes


class _InputTimeNode(InputNode):
    def __init__(self, node_id: str, where: Where | None = None) -> None:
        super().__init__(node_id, where=where)
        self._time = 0
        self._has_new = False

    def update(self, value: int) -> None:
        self._time = int(value)
        self._has_new = True

    def update_port_data(self, port_id: str, handle: _PortHandle) -> bool:
        if not self._has_new:
            return False
        handle.data[:] = [self._time]
        self._has_new = False
        return True


class InputClockNode(_InputTimeNode):
    """``clock_node``: milliseconds since the Event Loop started, or the FTI loop's simulation time."""

    type_name = "Clock"


class InputIterationNode(_InputTimeNode):
    """``iteration_node``: the number of loop iterations so far."""

    type_name = "Iteration"


class Clock(_InputEdge):
    """``@Clock(keyword)``: the loop clock in milliseconds as input ``keyword``."""

    decorator = "Clock"

    def __init__(self, keyword: str) -> None:
        super().__init__(
            keyword,
            "clock_node",
            "clock",
            node_policies.input_node.msg_publish.last,
            node_policies.input_node.msg_cache.keep,
        )

    def make_node(self) -> InputNode:
        return InputClockNode(self.node_id, self.where)


class Iteration(_InputEdge):
    """``@Iteration(keyword)``: the loop iteration number as input ``keyword``."""

    decorator = "Iteration"

    def __init__(self, keyword: str) -> None:
        super().__init__(
            keyword,
            "iteration_node",
            "iteration",
            node_policies.input_node.msg_publish.last,
            node_policies.input_node.msg_cache.keep,
        )

    def make_node(self) -> InputNode:
        return InputIterationNode(self.node_id, self.where)


# --------------------------------------------------------------------------------------------------
# Dummy nodes (nrp-core's test helpers)


class InputDummyNode(InputNode):
    """Publishes the same value in every cycle."""

    type_name = "InputDummy"

    def __init__(self, node_id: str, value: Any, where: Where | None = None) -> None:
        super().__init__(node_id, where=where)
        self.value = value

    def update_port_data(self, port_id: str, handle: _PortHandle) -> bool:
        handle.data[:] = [self.value]
        return True


class OutputDummyNode(OutputNode):
    """Records what it receives: ``call_count`` and ``last_data``."""

    type_name = "OutputDummy"

    def __init__(
        self,
        node_id: str,
        publish_from_cache: bool = False,
        compute_period: int = 1,
        where: Where | None = None,
    ) -> None:
        super().__init__(node_id, publish_from_cache, 0, compute_period, where)
        self.call_count = 0
        self.last_data: Any = None

    def send_single(self, port_id: str, value: Any) -> None:
        self.last_data = value
        self.call_count += 1


class InputDummy(_InputEdge):
    """``@InputDummy(keyword, address, value)``: input ``keyword`` gets ``value`` in every cycle."""

    decorator = "InputDummy"

    def __init__(self, keyword: str, address: str, value: Any) -> None:
        super().__init__(
            keyword,
            address,
            address,
            node_policies.input_node.msg_publish.last,
            node_policies.input_node.msg_cache.keep,
        )
        self.value = value

    def make_node(self) -> InputNode:
        return InputDummyNode(self.node_id, self.value, self.where)


class OutputDummy(_OutputEdge):
    """``@OutputDummy(keyword, address, publish_from_cache=False, compute_period=1)``: records outputs."""

    decorator = "OutputDummy"

    def __init__(
        self, keyword: str, address: str, publish_from_cache: bool = False, compute_period: int = 1
    ) -> None:
        super().__init__(keyword, address, address, publish_from_cache, compute_period)

    def make_node(self) -> OutputNode:
        return OutputDummyNode(self.node_id, self.publish_from_cache, self.compute_period, self.where)
