"""FTILoop scheduling and pools: engines of different timesteps on one timeline, and which
datapacks each pool holds when."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from nrp_core.client import NrpCore
from nrp_core.data.nrp_json import JsonDataPack
from nrp_core.datapacks import DataPackInterface
from nrp_core.engines.launch import EngineHandle
from nrp_core.functions import load_functions
from nrp_core.loop import FTILoop
from tests.nrp_core.loop_helpers import COUNTING_ENGINE, LOOP_SYNC, in_process_overrides, write_experiment

# Hand-written expected rows for the first 8 batches of the loop_sync experiment (engines at 10, 20
# and 40 ms). Per batch: the TFs that ran, in order, and what each saw of every engine:
# [engine time in ms, isUpdated(), iteration of the TF output the engine received before that step].
EXPECTED_FIRST_ROWS = [
    (0, ["tf_1", "tf_2", "tf_3"], [0, True, None], [0, True, None], [0, True, None]),
    (10, ["tf_1"], [10, True, 0], [0, False, None], [0, False, None]),
    (20, ["tf_2", "tf_1"], [20, True, 1], [20, True, 0], [0, False, None]),
    (30, ["tf_1"], [30, True, 2], [20, False, 0], [0, False, None]),
    (40, ["tf_3", "tf_2", "tf_1"], [40, True, 3], [40, True, 2], [40, True, 0]),
    (50, ["tf_1"], [50, True, 4], [40, False, 2], [40, False, 0]),
    (60, ["tf_2", "tf_1"], [60, True, 5], [60, True, 4], [40, False, 0]),
    (70, ["tf_1"], [70, True, 6], [60, False, 4], [40, False, 0]),
]


def _expected_row(k: int) -> tuple:
    """The same pattern for batch ``k`` (t = 10k ms), continued past the first 8 batches."""

    def seen(period: int) -> list[Any]:
        last_sync = (k // period) * period
        previous = last_sync - period
        return [last_sync * 10, k % period == 0, previous if previous >= 0 else None]

    # Engine queue order, as nrp-core: after t = 0 the engine that waited longest comes first.
    tfs = (["tf_3"] if k % 4 == 0 else []) + (["tf_2"] if k % 2 == 0 else []) + ["tf_1"]
    if k == 0:
        tfs = ["tf_1", "tf_2", "tf_3"]
    return (10 * k, tfs, seen(1), seen(2), seen(4))


def _actual_rows(trajectory: list[dict]) -> list[tuple]:
    rows = []
    for k, row in enumerate(trajectory):
        records = row["records"]
        assert {r["time_ms"] for r in records} == {row["time_ms"]}
        assert {r["iteration"] for r in records} == {k}
        views = {tuple(map(str, (r["engine_1"], r["engine_2"], r["engine_3"]))) for r in records}
        assert len(views) == 1, f"TFs of batch {k} saw different data: {views}"
        first = records[0]
        rows.append(
            (
                row["time_ms"],
                [r["tf"] for r in records],
                first["engine_1"],
                first["engine_2"],
                first["engine_3"],
            )
        )
    return rows


@pytest.mark.parametrize("in_process", [False, True], ids=["engine-processes", "in-process"])
def test_multi_rate_timeline_row_by_row(in_process: bool) -> None:
    client = NrpCore(
        "localhost:5345",
        experiment_folder=str(LOOP_SYNC),
        log_output=None,
        overrides=in_process_overrides(3) if in_process else (),
    )
    client.initialize()
    try:
        done, timed_out, trajectory = client.run_until_timeout()
    finally:
        client.shutdown()
    assert (done, timed_out) == (False, True)
    rows = _actual_rows(trajectory)
    assert len(rows) == 100
    assert rows[:8] == EXPECTED_FIRST_ROWS
    for k, row in enumerate(rows):
        assert row == _expected_row(k), f"batch {k}"
    assert [r[0] for r in rows] == list(range(0, 1000, 10))
    counts = {name: sum(name in r[1] for r in rows) for name in ("tf_1", "tf_2", "tf_3")}
    assert counts == {"tf_1": 100, "tf_2": 50, "tf_3": 25}


# -- pool rules, with stub engines ---------------------------------------------------------------------


class StubEngine(EngineHandle):
    """An engine handle that records what the loop asks of it; ``replies`` are its fetches per batch."""

    def __init__(self, name: str, timestep: float, replies: list[list[DataPackInterface]] | None = None):
        super().__init__({"EngineName": name, "EngineTimestep": timestep}, Path("."))
        self.replies = list(replies or [])
        self.steps: list[int | None] = []
        self.received: list[dict[str, Any]] = []
        self.report_time: int | None = None

    def initialize(self, requested):
        return []

    def begin_step(self, datapacks, time_step):
        self.received.append({dp.name: dp.to_json() for dp in datapacks})
        self.steps.append(time_step)
        if time_step is not None:
            self.engine_time += time_step
        if self.report_time is not None:
            self.engine_time = self.report_time

    def finish_step(self):
        return self.replies.pop(0) if self.replies else []

    def reset(self, datapacks):
        self.engine_time = 0
        return []

    def shutdown(self):
        pass


def _loop(
    tmp_path: Path, engines: list[StubEngine], functions: dict[str, str] | None = None, **config
) -> FTILoop:
    write_experiment(tmp_path, {}, functions, **config)
    doc = {"SimulationTimeout": 1, **config}
    doc["DataPackProcessingFunctions"] = [{"Name": n, "FileName": f"{n}.py"} for n in functions or {}]
    loop = FTILoop(doc, tmp_path, engines, load_functions(doc, tmp_path))
    loop.initialize()
    return loop


ONCE_TF = """
from nrp_core import *
from nrp_core.data.nrp_json import JsonDataPack

@SimulationIteration("i")
@TransceiverFunction("a")
def once(i):
    if i > 0:
        return []
    sent = JsonDataPack("command", "a")
    sent.data["value"] = 1
    return [sent]
"""


def test_transceiver_and_client_datapacks_are_resent_at_every_synchronization(tmp_path: Path) -> None:
    engine = StubEngine("a", 0.01)
    loop = _loop(tmp_path, [engine], {"once": ONCE_TF})
    loop.set_external([JsonDataPack.from_json("client", "a", {"v": 2})])
    loop.run(3)
    assert engine.received == [{"command": {"value": 1}, "client": {"v": 2}}] * 3
    loop.reset()
    loop.run(1)
    assert engine.received[-1] == {}, "reset clears the pools"


def test_empty_fetch_does_not_overwrite_and_pooled_datapacks_go_stale(tmp_path: Path) -> None:
    status = """
    from nrp_core import *

    @EngineDataPack("d", DataPackIdentifier("d", "a"))
    @StatusFunction()
    def status(d):
        data = None if d.isEmpty() else d.to_json()
        return False, [{"empty": d.isEmpty(), "updated": d.isUpdated(), "data": data}]
    """
    engine = StubEngine(
        "a",
        0.01,
        [
            [JsonDataPack.from_json("d", "a", {"n": 1})],
            [DataPackInterface("d", "a", "")],
            [JsonDataPack.from_json("d", "a", {"n": 3})],
        ],
    )
    write_experiment(tmp_path, {}, status=status)
    doc = {"SimulationTimeout": 1, "StatusFunction": {"Name": "status", "FileName": "status.py"}}
    loop = FTILoop(doc, tmp_path, [engine], load_functions(doc, tmp_path))
    loop.initialize()
    loop.run(4)
    observations = loop.take_trajectory()
    assert [o["data"] for o in observations] == [{"n": 1}, {"n": 1}, {"n": 3}, {"n": 3}]
    assert [o["updated"] for o in observations] == [True, False, True, False]
    assert not any(o["empty"] for o in observations)


def test_an_engine_ahead_of_time_is_not_stepped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = StubEngine("a", 0.01)
    loop = _loop(tmp_path, [engine])
    engine.report_time = 30_000_000  # the engine claims to be at 30 ms after its first step
    with caplog.at_level(logging.WARNING, logger="nrp_core.loop"):
        loop.run(4)
    # Batches at 0 (step), 10 (ahead: no step, re-queued at its own 30 ms), 30 (step again).
    assert engine.steps == [10_000_000, None, 10_000_000]
    assert loop.sim_time == 40_000_000
    assert 'Engine "a" is ahead of simulation time' in caplog.text


def test_without_engines_only_time_advances_and_iterations_survive_reset(tmp_path: Path) -> None:
    loop = _loop(tmp_path, [])
    loop.run(3)
    assert (loop.sim_time, loop.iteration) == (30_000_000, 0)
    engine = StubEngine("a", 0.02)
    loop = _loop(tmp_path / "one", [engine])
    loop.run(4)  # the loop timestep is the engine's 20 ms
    assert (loop.sim_time, loop.iteration, engine.engine_time) == (80_000_000, 4, 80_000_000)
    loop.reset()
    assert (loop.sim_time, loop.iteration, engine.engine_time) == (0, 4, 0)


def test_engine_ahead_keeps_drift_compensation_for_late_engines(tmp_path: Path) -> None:
    engine = StubEngine("a", 0.01)
    loop = _loop(tmp_path, [engine])
    loop.run(1)
    engine.engine_time = 8_000_000  # lagging by 2 ms: the next step asks for 12 ms
    loop.run(1)
    assert engine.steps == [10_000_000, 12_000_000]


def test_status_function_done_flag_persists_until_the_next_evaluation(tmp_path: Path) -> None:
    write_experiment(
        tmp_path,
        {"fast": (COUNTING_ENGINE, 0.01)},
        status="""
        from nrp_core import *

        @SimulationIteration("i")
        @StatusFunction()
        def status(i):
            return i == 1, []
        """,
    )
    client = NrpCore("localhost:5345", experiment_folder=str(tmp_path), log_output=None)
    client.initialize()
    try:
        assert client.run_until_timeout()[:2] == (True, False)
        assert client.simulation_time_ns == 20_000_000
        assert client.run_until_timeout()[:2] == (True, False), "returns at once while done is set"
        assert client.simulation_time_ns == 20_000_000
        assert client.run_loop(1)[0] is False
    finally:
        client.shutdown()


def test_shutdown_removes_the_experiment_directory_from_sys_path_only_if_it_added_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # E.g. ``python main.py`` run beside the experiment: sys.path[0] is the experiment directory.
    import sys

    for folder, already_there in (("a", True), ("b", False)):
        directory = tmp_path / folder
        write_experiment(directory, {"e": (COUNTING_ENGINE, 0.01)}, in_process=False)
        if already_there:
            monkeypatch.syspath_prepend(str(directory.resolve()))
        client = NrpCore("localhost:5345", experiment_folder=str(directory), log_output=None)
        client.initialize()
        assert str(directory.resolve()) in sys.path
        client.shutdown()
        assert (str(directory.resolve()) in sys.path) is already_there
