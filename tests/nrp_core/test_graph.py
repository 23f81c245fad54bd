"""The computational graph: every node kind and policy against hand-computed schedules, and graph errors."""

from __future__ import annotations

import json
import logging
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from nrp_core.data.nrp_json import JSON_DATAPACK_TYPE, JsonDataPack
from nrp_core.datapacks import DataPackInterface
from nrp_core.event_loop import EventLoop, ExecMode, GraphError, load_graph
from nrp_core.event_loop.event_loop import GraphDataPackProcessor, jitter_stats
from nrp_core.event_loop.graph import ComputationalGraph
from nrp_core.event_loop.mqtt import InputMQTTNode, OutputMQTTNode
from nrp_core.functions import FunctionError
from tests.helpers.brokers import BrokerProcess
from tests.helpers.waiting import join, wait_until

HEADER = """\
from nrp_core.event_loop import *
from nrp_core.data.nrp_json import JsonDataPack, NlohmannJson

log = []
ALWAYS = node_policies.functional_node.exec_policy.always
"""


def load(
    tmp_path: Path, source: str, mode: ExecMode = ExecMode.ALL_NODES, **kwargs: Any
) -> ComputationalGraph:
    (tmp_path / "graph.py").write_text(HEADER + textwrap.dedent(source))
    return load_graph(["graph.py"], tmp_path, mode, **kwargs)


def log_of(graph: ComputationalGraph) -> list[Any]:
    node = next(n for n in graph.nodes.values() if getattr(n, "fn", None) is not None)
    return node.fn.__globals__["log"]


def line_of(tmp_path: Path, text: str) -> int:
    lines = (tmp_path / "graph.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


class Sink:
    """Stands in for the MQTT connection of output nodes: records what they publish."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []

    def publish(self, topic: str, payload: Any) -> None:
        self.published.append((topic, payload))


# -- functional nodes, time nodes, layers -------------------------------------------------------------


def test_exec_policies_against_a_hand_computed_schedule(tmp_path: Path) -> None:
    # 'source' runs always and emits a value only on even iterations (None otherwise: nothing is
    # published); 'on_new' runs only in cycles with a new input; 'always' runs every cycle and keeps
    # seeing the last value.
    graph = load(
        tmp_path,
        """
        @Iteration("it")
        @FunctionalNode(name="source", outputs=["x"], exec_policy=ALWAYS)
        def source(it):
            return [it * 10] if it % 2 == 0 else None

        @FromFunctionalNode("x", "/source/x")
        @FunctionalNode(name="on_new", outputs=[])
        def on_new(x):
            log.append(("on_new", x))

        @FromFunctionalNode("x", "/source/x")
        @FunctionalNode(name="always", outputs=[], exec_policy=ALWAYS)
        def always(x):
            log.append(("always", x))
        """,
    )
    iteration = graph.nodes["iteration_node"]
    for k in range(5):
        iteration.update(k)
        graph.compute()
    assert log_of(graph) == [
        ("on_new", 0),
        ("always", 0),
        ("always", 0),
        ("on_new", 20),
        ("always", 20),
        ("always", 20),
        ("on_new", 40),
        ("always", 40),
    ]


def test_layers_follow_the_edges_whatever_the_declaration_order(tmp_path: Path) -> None:
    graph = load(
        tmp_path,
        """
        @FromFunctionalNode("b", "/b/out")
        @FunctionalNode(name="c", outputs=[])
        def c(b):
            log.append(("c", b))

        @FromFunctionalNode("a", "/a/out")
        @FunctionalNode(name="b", outputs=["out"])
        def b(a):
            log.append(("b", a))
            return [a + 1]

        @Clock("t")
        @FunctionalNode(name="a", outputs=["out"])
        def a(t):
            log.append(("a", t))
            return [t]
        """,
    )
    assert [[n.id for n in layer] for layer in graph.layers] == [["a"], ["b"], ["c"]]
    assert [n.id for n in graph.input_layer] == ["clock_node"]
    graph.nodes["clock_node"].update(7)
    graph.compute()
    assert log_of(graph) == [("a", 7), ("b", 7), ("c", 8)]


def test_unconnected_inputs_are_none_and_disconnected_nodes_never_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    graph = load(
        tmp_path,
        """
        @Clock("t")
        @FunctionalNode(name="a", outputs=["unused"], exec_policy=ALWAYS)
        def a(t, other):
            log.append(("a", t, other))
            return [1]

        @FunctionalNode(name="lonely", outputs=[], exec_policy=ALWAYS)
        def lonely():
            log.append("lonely")
        """,
    )
    graph.nodes["clock_node"].update(3)
    graph.compute()
    assert log_of(graph) == [("a", 3, None)]
    messages = caplog.text
    assert 'input argument "other" is not connected' in messages
    assert 'Graph node "lonely" (graph.py:' in messages and "will not be executed" in messages


def test_a_node_returning_the_wrong_number_of_outputs_fails_naming_it(tmp_path: Path) -> None:
    graph = load(
        tmp_path,
        """
        @Clock("t")
        @FunctionalNode(name="bad", outputs=["x", "y"])
        def bad(t):
            return [t]
        """,
    )
    graph.nodes["clock_node"].update(1)
    with pytest.raises(FunctionError, match="'bad' has 2 declared outputs, but returns 1 elements"):
        graph.compute()


def test_an_exception_in_a_node_names_the_node_file_and_line(tmp_path: Path) -> None:
    graph = load(
        tmp_path,
        """
        @Clock("t")
        @FunctionalNode(name="boom", outputs=[])
        def boom(t):
            return 1 / 0
        """,
    )
    graph.nodes["clock_node"].update(1)
    with pytest.raises(FunctionError) as raised:
        graph.compute()
    assert raised.value.function_name == "boom"
    assert raised.value.line == line_of(tmp_path, "return 1 / 0")
    assert str(raised.value).startswith(f'Function "boom" (graph.py:{raised.value.line}): ZeroDivisionError')


# -- engine nodes and input node policies ------------------------------------------------------------------


def _datapack(name: str, engine: str, value: Any) -> JsonDataPack:
    return JsonDataPack.from_json(name, engine, {"v": value})


def test_from_engine_keep_and_clear_cache_policies(tmp_path: Path) -> None:
    graph = load(
        tmp_path,
        """
        @FromEngine("kept", "/eng/a")
        @FunctionalNode(name="keep", outputs=[], exec_policy=ALWAYS)
        def keep(kept):
            log.append(("keep", kept.data["v"] if kept is not None else None))

        @FromEngine("cleared", "/eng2/b", cache_policy=node_policies.input_node.msg_cache.clear)
        @FunctionalNode(name="clear", outputs=[], exec_policy=ALWAYS)
        def clear(cleared):
            log.append(("clear", cleared.data["v"] if cleared is not None else None))
        """,
    )
    processor = GraphDataPackProcessor(graph, ["eng", "eng2"], compute=False)
    assert processor.requested() == {"eng": {"a": ""}, "eng2": {"b": ""}}
    # cycle 1: both get a datapack; cycle 2: nothing new; cycle 3: an empty datapack for 'a' does
    # not replace the stored one, a new 'b' arrives.
    processor.set_datapacks("eng", [_datapack("a", "eng", 1)])
    processor.set_datapacks("eng2", [_datapack("b", "eng2", 1)])
    graph.compute()
    graph.compute()
    processor.set_datapacks("eng", [DataPackInterface("a", "eng", "")])
    processor.set_datapacks("eng2", [_datapack("b", "eng2", 3)])
    graph.compute()
    assert log_of(graph) == [
        ("keep", 1),
        ("clear", 1),
        ("keep", 1),
        ("clear", None),
        ("keep", 1),
        ("clear", 3),
    ]


def test_to_engine_collects_one_copy_per_datapack_for_its_engine_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    graph = load(
        tmp_path,
        """
        @Iteration("it")
        @ToEngine("mine", "/eng")
        @ToEngine("other", "/eng")
        @FunctionalNode(name="n", outputs=["mine", "other"])
        def n(it):
            mine = JsonDataPack("cmd", "eng")
            mine.data["it"] = it
            return [mine, JsonDataPack("cmd", "somewhere_else")]
        """,
    )
    caplog.set_level(logging.INFO, logger="nrp_core.event_loop")
    out = graph.nodes["eng_output"]
    graph.nodes["iteration_node"].update(1)
    graph.compute()
    sent = out.take_datapacks()
    assert [(d.name, d.engine_name, d.data["it"]) for d in sent] == [("cmd", "eng", 1)]
    assert out.take_datapacks() == []  # sent once
    assert "only datapacks of engine 'eng'" in caplog.text


def test_output_driven_mode_runs_only_nodes_feeding_due_outputs(tmp_path: Path) -> None:
    graph = load(
        tmp_path,
        """
        @Iteration("it")
        @ToEngine("out", "/a")
        @FunctionalNode(name="to_a", outputs=["out"])
        def to_a(it):
            log.append(("to_a", it))
            return [JsonDataPack("x", "a")]

        @Iteration("it")
        @ToEngine("out", "/b")
        @FunctionalNode(name="to_b", outputs=["out"])
        def to_b(it):
            log.append(("to_b", it))
            return [JsonDataPack("x", "b")]
        """,
        ExecMode.OUTPUT_DRIVEN,
    )
    processor = GraphDataPackProcessor(graph, ["a", "b"], compute=True)
    outgoing: dict[str, Any] = {"a": ({}, {}), "b": ({}, {})}
    for it, batch in enumerate([["a", "b"], ["a"], ["a", "b"], ["a"]]):
        processor.run_batch(batch, it * 10_000_000, it, outgoing)
    # to_b saw every iteration's new input but ran only when b was synchronized.
    assert log_of(graph) == [("to_a", 0), ("to_b", 0), ("to_a", 1), ("to_a", 2), ("to_b", 2), ("to_a", 3)]


# -- MQTT nodes (no broker: messages injected, publications recorded) ----------------------------------------


def test_mqtt_subscriber_last_and_all_publish_policies(tmp_path: Path) -> None:
    graph = load(
        tmp_path,
        """
        @MQTTSubscriber("last", "topic_a", type=str)
        @MQTTSubscriber("every", "topic_b", type=NlohmannJson, publish_policy=node_policies.input_node.all)
        @FunctionalNode(name="n", outputs=[], exec_policy=ALWAYS)
        def n(last, every):
            log.append((last, [e["k"] for e in every] if every is not None else None))
        """,
    )
    a, b = graph.nodes["topic_a_input"], graph.nodes["topic_b_input"]
    assert isinstance(a, InputMQTTNode) and isinstance(b, InputMQTTNode)
    graph.compute()
    a.receive(b"first")
    a.receive(b"second")
    b.receive(json.dumps({"k": 1}).encode())
    b.receive(json.dumps({"k": 2}).encode())
    graph.compute()
    graph.compute()
    b.receive(json.dumps({"k": 3}).encode())
    graph.compute()
    # keep cache (the default): cycles without messages publish nothing, inputs keep their value.
    assert log_of(graph) == [(None, None), ("second", [1, 2]), ("second", [1, 2]), ("second", [3])]


def test_mqtt_publisher_from_cache_and_compute_period(tmp_path: Path) -> None:
    graph = load(
        tmp_path,
        """
        @Iteration("it")
        @MQTTPublisher("cached", "out_cached", type=str, publish_from_cache=True)
        @MQTTPublisher("periodic", "out_periodic", type=str, compute_period=2)
        @MQTTPublisher("plain", "out_plain", type=str)
        @FunctionalNode(name="n", outputs=["cached", "periodic", "plain"])
        def n(it):
            if it == 0:
                return ["c0", "p0", "x0"]
            if it == 3:
                return ["c3", "p3", "x3"]
            return None
        """,
    )
    sink = Sink()
    for node in graph.nodes.values():
        if isinstance(node, OutputMQTTNode):
            node.connection = sink  # type: ignore[assignment]
    for it in range(5):
        sink.published.append(("cycle", it))
        graph.nodes["iteration_node"].update(it)
        graph.compute()
    # cached: re-sent every cycle; periodic: runs in cycles 0, 2, 4 and sends what it holds;
    # plain: sent once, in the cycle it was produced. Output nodes run in the order they were
    # created (decorators apply bottom-up: plain, periodic, cached).
    assert sink.published == [
        ("cycle", 0),
        ("out_plain", "x0"),
        ("out_periodic", "p0"),
        ("out_cached", "c0"),
        ("cycle", 1),
        ("out_cached", "c0"),
        ("cycle", 2),
        ("out_cached", "c0"),
        ("cycle", 3),
        ("out_plain", "x3"),
        ("out_cached", "c3"),
        ("cycle", 4),
        ("out_periodic", "p3"),
        ("out_cached", "c3"),
    ]


def test_mqtt_nodes_over_a_real_broker_with_json_datapacks(
    tmp_path: Path, mqtt_broker: BrokerProcess
) -> None:
    graph = load(
        tmp_path,
        """
        @MQTTSubscriber("dp", "eng/get/state", type=JsonDataPack)
        @MQTTPublisher("out", "eng/set/cmd", type=JsonDataPack)
        @FunctionalNode(name="relay", outputs=["out"])
        def relay(dp):
            log.append(dp.data["v"])
            out = JsonDataPack("cmd", "eng")
            out.data["double"] = 2 * dp.data["v"]
            return [out]
        """,
        mqtt_config={"MQTTBroker": mqtt_broker.address, "ClientName": "graph-test"},
    )
    import paho.mqtt.client as mqtt

    received: list[Any] = []
    got = threading.Event()
    peer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="graph-test-peer")
    peer.on_message = lambda _c, _u, m: (received.append(json.loads(m.payload)), got.set())
    peer.connect(mqtt_broker.host, mqtt_broker.port)
    peer.subscribe("eng/set/cmd", 1)
    peer.loop_start()
    try:
        message = {"name": "state", "engine_name": "eng", "type": "nlohmann::json", "data": {"v": 21}}

        def exchanged() -> bool:
            # Until the graph's subscription is in place, messages are lost: publish each time.
            peer.publish("eng/get/state", json.dumps(message), qos=1)
            graph.compute()
            return got.wait(0.1)

        wait_until(exchanged, message="a datapack back over MQTT")
        assert received[0] == {
            "name": "cmd",
            "engine_name": "eng",
            "type": JSON_DATAPACK_TYPE,
            "data": {"double": 42},
        }
        assert log_of(graph)[0] == 21
    finally:
        peer.loop_stop()
        peer.disconnect()
        graph.shutdown()


# -- graph errors, with the file and line of the offending decorator -----------------------------------------


@pytest.mark.parametrize(
    ("source", "marker", "message"),
    [
        (
            """
            @FromFunctionalNode("x", "/nowhere/out")
            @FunctionalNode(name="a", outputs=[])
            def a(x):
                pass
            """,
            "/nowhere/out",
            "there is no functional node named 'nowhere'",
        ),
        (
            """
            @Clock("t")
            @FunctionalNode(name="a", outputs=["out"])
            def a(t):
                return [t]

            @FromFunctionalNode("x", "/a/missing")
            @FunctionalNode(name="b", outputs=[])
            def b(x):
                pass
            """,
            "/a/missing",
            "functional node 'a' has no declared output 'missing'",
        ),
        (
            """
            @FromEngine("x", "/eng/dp")
            @FromEngine("x", "/eng/other")
            @FunctionalNode(name="a", outputs=[])
            def a(x):
                pass
            """,
            '@FromEngine("x", "/eng/dp")',
            "port 'x' of node 'a' is already connected to '/eng_input/other'",
        ),
        (
            """
            @FromFunctionalNode("x", "/b/out")
            @FunctionalNode(name="a", outputs=["out"])
            def a(x):
                return [x]

            @FromFunctionalNode("x", "/a/out")
            @FunctionalNode(name="b", outputs=["out"])
            def b(x):
                return [x]
            """,
            '@FunctionalNode(name="a"',
            "cycle(s) found in the graph, cycles are not supported: 'a' (graph.py:",
        ),
        (
            """
            @FunctionalNode(name="a", outputs=[])
            def a():
                pass

            @FunctionalNode(name="a", outputs=[])
            def a2():
                pass
            """,
            "def a2",
            "a functional node named 'a' already exists",
        ),
        (
            """
            @FromEngine("y", "/eng/dp")
            @FunctionalNode(name="a", outputs=[])
            def a(x):
                pass
            """,
            "@FromEngine",
            "'y' does not match any of the declared input arguments of node 'a' (x)",
        ),
        (
            """
            @FromEngine("x", "eng/dp")
            @FunctionalNode(name="a", outputs=[])
            def a(x):
                pass
            """,
            "@FromEngine",
            "addresses must start with '/'",
        ),
        (
            """
            @MQTTPublisher("o", "topic", type=int)
            @FunctionalNode(name="a", outputs=["o"])
            def a():
                return [1]
            """,
            "@MQTTPublisher",
            "MQTT payload type 'int' is not supported",
        ),
        (
            """
            @RosSubscriber(keyword="x", address="/t", type=str)
            @FunctionalNode(name="a", outputs=[])
            def a(x):
                pass
            """,
            "@RosSubscriber",
            "ROS is not supported",
        ),
    ],
    ids=[
        "unknown-node",
        "unknown-output",
        "port-connected-twice",
        "cycle",
        "duplicate-node",
        "unknown-keyword",
        "bad-address",
        "mqtt-type",
        "ros",
    ],
)
def test_graph_errors_fail_at_load_with_file_and_line(
    tmp_path: Path, source: str, marker: str, message: str
) -> None:
    with pytest.raises(GraphError) as raised:
        load(tmp_path, source)
    error = raised.value
    assert message in str(error)
    assert Path(error.where.file).name == "graph.py"
    if marker == "def a2":
        # The duplicate is detected when its @FunctionalNode is applied, at the 'def' line (3.11+).
        assert error.where.line in (line_of(tmp_path, marker) - 1, line_of(tmp_path, marker))
    else:
        assert error.where.line == line_of(tmp_path, marker)
    assert str(error).startswith(f"graph.py:{error.where.line}: ")


def test_decorators_outside_a_graph_file_are_refused() -> None:
    from nrp_core.event_loop import FunctionalNode

    with pytest.raises(GraphError, match="only work in the files listed in 'ComputationalGraph'"):

        @FunctionalNode(name="x", outputs=[])
        def x() -> None:
            pass


def test_a_missing_graph_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(GraphError, match="'missing.py' failed: the file doesn't exist"):
        load_graph(["missing.py"], tmp_path)


# -- the Event Loop ------------------------------------------------------------------------------------------


def test_event_loop_ticks_clock_and_iteration_until_its_duration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nrp_core.event_loop")
    graph = load(
        tmp_path,
        """
        @Clock("ms")
        @Iteration("it")
        @FunctionalNode(name="n", outputs=[])
        def n(ms, it):
            log.append((ms, it))
        """,
    )
    loop = EventLoop(graph, timestep=0.01)
    loop.run(0.1)
    ticks = log_of(graph)
    # At most one tick per timestep, fewer on a busy machine.
    assert 1 <= len(ticks) <= 11
    assert [it for _ms, it in ticks] == list(range(len(ticks)))
    clocks = [ms for ms, _it in ticks]
    assert clocks[0] == 0 and clocks == sorted(clocks)
    assert all(ms >= 10 * it for ms, it in ticks)
    stats = jitter_stats(loop.periods, 0.01)
    assert stats["n"] == len(ticks) - 1
    assert loop.sim_time >= 100_000_000
    assert f"Event Loop ran {len(ticks)} ticks of 10.0 ms" in caplog.text and "p99" in caplog.text


def test_event_loop_without_timeout_runs_until_stopped(tmp_path: Path) -> None:
    graph = load(
        tmp_path,
        """
        @Iteration("it")
        @FunctionalNode(name="n", outputs=[])
        def n(it):
            log.append(it)
        """,
    )
    loop = EventLoop(graph, timestep=0.005)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(0, stop))
    thread.start()
    wait_until(lambda: len(log_of(graph)) >= 5, message="5 ticks")
    stop.set()
    join(thread)
    assert len(log_of(graph)) >= 5


def test_dummy_nodes_feed_a_constant_and_record_outputs(tmp_path: Path) -> None:
    graph = load(
        tmp_path,
        """
        @InputDummy("x", "const", 5)
        @OutputDummy("y", "sink")
        @FunctionalNode(name="double", outputs=["y"])
        def double(x):
            return [2 * x]
        """,
    )
    for _ in range(3):
        graph.compute()
    sink = graph.nodes["sink"]
    assert (sink.call_count, sink.last_data) == (3, 10)


def test_a_none_output_is_a_message_but_a_cleared_cache_is_not(tmp_path: Path) -> None:
    # nrp-core: a functional node's None output is a Python object, hence new input downstream; an
    # input node clearing its cache publishes a null pointer, which is not.
    graph = load(
        tmp_path,
        """
        @Iteration("it")
        @FunctionalNode(name="source", outputs=["x"], exec_policy=ALWAYS)
        def source(it):
            return [None]

        @FromFunctionalNode("x", "/source/x")
        @FunctionalNode(name="after_none", outputs=[])
        def after_none(x):
            log.append(("after_none", x))

        @FromEngine("dp", "/eng/dp", cache_policy=node_policies.input_node.msg_cache.clear)
        @FunctionalNode(name="after_clear", outputs=[])
        def after_clear(dp):
            log.append(("after_clear", dp))
        """,
    )
    for it in range(2):
        graph.nodes["iteration_node"].update(it)
        graph.compute()
    assert log_of(graph) == [("after_none", None), ("after_none", None)]


def test_mqtt_broker_address_and_client_id() -> None:
    import os

    from nrp_core.event_loop.mqtt import broker_address, client_id, split_address

    assert broker_address("host:1", {"NRP_MQTT_BROKER_ADDRESS": "env:2"}) == "host:1"
    assert broker_address(None, {"NRP_MQTT_BROKER_ADDRESS": "env:2"}) == "env:2"
    assert broker_address(None, {}) == "localhost:1883"
    assert split_address("tcp://broker:1884") == ("broker", 1884)
    assert split_address("broker") == ("broker", 1883)
    assert client_id("mine", "x") == "mine"
    assert client_id("NRP-core-client", "NRP-core-client") == f"NRP-core-client-{os.getpid()}"
    assert client_id(None, "python_1") == f"python_1-{os.getpid()}"
