"""The computational graph in the FTI loop (``DataPackProcessor: "cg"``)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from nrp_core.client import NrpCore
from tests.nrp_core.loop_helpers import FIXTURES, in_process_overrides, write_experiment
from tests.nrp_core.test_loop import EXPECTED_FIRST_ROWS, _actual_rows, _expected_row

LOOP_SYNC_CG = FIXTURES / "loop_sync_cg"


def _timeline(client: NrpCore) -> list[dict[str, Any]]:
    node = client._loop.graph.graph.nodes["node_1"]
    return node.fn.__globals__["timeline"]


def _rows(timeline: list[dict[str, Any]]) -> list[tuple]:
    by_time: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in timeline:
        by_time[record["time_ms"]].append(record)
    return _actual_rows([{"time_ms": t, "records": records} for t, records in sorted(by_time.items())])


@pytest.mark.parametrize("in_process", [False, True], ids=["engine-processes", "in-process"])
def test_graph_gives_the_same_multi_rate_rows_as_transceiver_functions(in_process: bool) -> None:
    client = NrpCore(
        "",
        experiment_folder=str(LOOP_SYNC_CG),
        log_output=None,
        overrides=in_process_overrides(3) if in_process else (),
    )
    client.initialize()
    try:
        done, timed_out, trajectory = client.run_until_timeout()
        timeline = list(_timeline(client))
    finally:
        client.shutdown()
    assert (done, timed_out, trajectory) == (False, True, [])
    rows = _rows(timeline)
    assert len(rows) == 100

    # Nodes run in graph order (node_1, node_2, node_3), not in the engine queue order of TFs.
    def graph_order(row: tuple) -> tuple:
        return (row[0], sorted(row[1]), *row[2:])

    assert rows[:8] == [graph_order(row) for row in EXPECTED_FIRST_ROWS]
    for k, row in enumerate(rows):
        assert row == graph_order(_expected_row(k)), f"batch {k}"


ENGINE = """
from nrp_core.engines.python_json import EngineScript


class Script(EngineScript):
    def initialize(self):
        self._registerDataPack("state")
        self._registerDataPack("input")
        self._setDataPack("state", {"time": 0})

    def runLoop(self, timestep_ns):
        self._setDataPack("state", {"time": self._time_ns, "input": self._getDataPack("input")})
"""


def test_graph_outputs_are_sent_once_and_only_to_synchronized_engines(tmp_path: Path) -> None:
    # a (10 ms) feeds b (20 ms) through a node that only runs on b's synchronizations and sends
    # a's time; its output reaches b once, at the synchronization after it was computed.
    graph = """
from nrp_core.event_loop import *
from nrp_core.data.nrp_json import JsonDataPack

runs = []

@FromEngine("state", "/a/state")
@ToEngine("out", "/b")
@FunctionalNode(name="relay", outputs=["out"])
def relay(state):
    runs.append(state.data["time"] // 1000000)
    sent = JsonDataPack("input", "b")
    sent.data["a_ms"] = state.data["time"] // 1000000
    return [sent]

@FromEngine("state", "/b/state")
@FunctionalNode(name="watch", outputs=[])
def watch(state):
    runs.append(("b", state.data["time"] // 1000000, state.data.get("input")))
"""
    (tmp_path / "graph.py").write_text(graph)
    config = write_experiment(
        tmp_path,
        {"a": (ENGINE, 0.01), "b": (ENGINE, 0.02)},
        DataPackProcessor="cg",
        ComputationalGraph=["graph.py"],
    )
    client = NrpCore("", config_file=str(config), log_output=None)
    client.initialize()
    try:
        client.run_loop(6)
        runs = client._loop.graph.graph.nodes["relay"].fn.__globals__["runs"]
        # 'watch' has no output node: in OUTPUT_DRIVEN mode it never runs.
        assert runs == [0, 20, 40]
        b_output = client._loop.graph.outputs["b"]
        assert b_output.take_datapacks() == []
    finally:
        client.shutdown()


EVENT_LOOP_GRAPH = """
from nrp_core.event_loop import *
from nrp_core.data.nrp_json import JsonDataPack

seen = []


@FromEngine("state", "/a/state")
@Clock("ms")
@FunctionalNode(name="watch", outputs=[], exec_policy=node_policies.functional_node.exec_policy.always)
def watch(state, ms):
    seen.append((ms, state.data["input"] if state is not None else None))
"""


def test_client_runs_an_event_loop_with_engines_beside_it(tmp_path: Path) -> None:
    (tmp_path / "graph.py").write_text(EVENT_LOOP_GRAPH)
    config = write_experiment(
        tmp_path,
        {"a": (ENGINE, 0.01)},
        SimulationLoop="EventLoop",
        EventLoop={"Timestep": 0.01, "Timeout": 0.05},
        ComputationalGraph=["graph.py"],
    )
    client = NrpCore("", config_file=str(config), log_output=None)
    client.initialize()
    try:
        seen = client._loop.graph.nodes["watch"].fn.__globals__["seen"]
        # Client datapacks go to the engines through the FTI loop running beside the Event Loop.
        client.set_json_datapack("input", "a", {"from": "client"})
        assert client.run_loop(3) == (False, [])
        first = len(seen)
        # At least the first tick; at most one per timestep (a busy machine makes fewer).
        assert 1 <= first <= 4
        done, timed_out, trajectory = client.run_until_timeout()
        assert (done, timed_out, trajectory) == (False, True, [])
        assert 1 <= len(seen) - first <= 6
        assert [ms for ms, _ in seen[first:]] == sorted(
            ms for ms, _ in seen[first:]
        )  # the clock restarts per run
        assert {"from": "client"} in [received for _, received in seen]
        assert client.simulation_time_ns >= 80_000_000
        with pytest.raises(RuntimeError, match="Reset is not implemented in the EventLoop"):
            client.reset()
    finally:
        client.shutdown()


def test_functions_are_not_loaded_with_a_graph_and_a_warning_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "graph.py").write_text("from nrp_core.event_loop import *\n")
    tf = """
from nrp_core import *

@TransceiverFunction("a")
def tf():
    raise RuntimeError("not called")
"""
    config = write_experiment(
        tmp_path, {"a": (ENGINE, 0.01)}, {"tf": tf}, DataPackProcessor="cg", ComputationalGraph=["graph.py"]
    )
    client = NrpCore("", config_file=str(config), log_output=None)
    client.initialize()
    try:
        client.run_loop(3)
    finally:
        client.shutdown()
    assert "replaces transceiver, preprocessing and status functions: tf not loaded" in caplog.text
