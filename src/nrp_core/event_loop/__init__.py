"""nrp-core's computational graph and Event Loop (``from nrp_core.event_loop import *``).

Graph files get the decorators (``FunctionalNode``, ``FromFunctionalNode``, ``FromEngine``,
``ToEngine``, ``Clock``, ``Iteration``, ``MQTTSubscriber``, ``MQTTPublisher``) and
``node_policies``. ROS, SpiNNaker and C++ functional nodes are not supported: their decorators
raise :class:`GraphError` naming the feature as soon as a graph file uses them.

Modules: ``policies`` (enums), ``graph`` (ports, node kinds, layering, one cycle), ``nodes``
(functional, engine and time nodes and their decorators), ``mqtt`` (MQTT nodes and connection),
``loader`` (graph files -> configured graph), ``event_loop`` (the timed loop and the FTI loop
hook), ``async_engine`` (engines running on their own clock, exchanging datapacks over MQTT).
"""

from __future__ import annotations

from typing import Any

from nrp_core.event_loop.async_engine import (
    EngineWrapper,
    EventLoopEngine,
    EventLoopInterface,
    run_event_loop_engine_app,
)
from nrp_core.event_loop.event_loop import EventLoop, GraphDataPackProcessor
from nrp_core.event_loop.graph import ComputationalGraph, GraphError, building, caller
from nrp_core.event_loop.loader import load_graph
from nrp_core.event_loop.mqtt import MQTTPublisher, MQTTSubscriber
from nrp_core.event_loop.nodes import (
    Clock,
    FromEngine,
    FromFunctionalNode,
    FunctionalNode,
    InputDummy,
    Iteration,
    OutputDummy,
    PythonFunctionalNode,
    ToEngine,
)
from nrp_core.event_loop.policies import ExecMode, node_policies

__all__ = [
    "Clock",
    "ComputationalGraph",
    "EngineWrapper",
    "EventLoop",
    "EventLoopEngine",
    "EventLoopInterface",
    "ExecMode",
    "FromEngine",
    "FromFunctionalNode",
    "FromSpinnaker",
    "FunctionalNode",
    "GraphDataPackProcessor",
    "GraphError",
    "InputDummy",
    "Iteration",
    "MQTTPublisher",
    "MQTTSubscriber",
    "OutputDummy",
    "PythonFunctionalNode",
    "RosPublisher",
    "RosSubscriber",
    "ToEngine",
    "ToSpinnaker",
    "building",
    "createFNFromFactoryModule",
    "load_graph",
    "node_policies",
    "run_event_loop_engine_app",
]


class _NotSupported:
    """A decorator of a feature we do not implement: raises at once, naming the feature."""

    feature = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise GraphError(f"{type(self).__name__}: {self.feature} are not supported", caller())


class RosSubscriber(_NotSupported):
    feature = "ROS nodes (ROS is not supported)"


class RosPublisher(_NotSupported):
    feature = "ROS nodes (ROS is not supported)"


class FromSpinnaker(_NotSupported):
    feature = "SpiNNaker nodes (SpiNNaker is not supported)"


class ToSpinnaker(_NotSupported):
    feature = "SpiNNaker nodes (SpiNNaker is not supported)"


def createFNFromFactoryModule(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - nrp-core's name
    """C++ functional nodes are not supported: raises :class:`GraphError`."""
    raise GraphError("createFNFromFactoryModule: C++ functional nodes are not supported", caller())
