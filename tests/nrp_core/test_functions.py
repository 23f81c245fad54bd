"""Function framework: the decorators, how function files are loaded, and what functions are called
with and may return."""

from __future__ import annotations

from pathlib import Path

import pytest

from nrp_core import (
    DataPackIdentifier,
    EngineDataPack,
    EngineDataPacks,
    SimulationTime,
    StatusFunction,
    TransceiverFunction,
)
from nrp_core.client import NrpCore
from nrp_core.functions import Function, FunctionLoadError, load_functions
from tests.nrp_core.loop_helpers import COUNTING_ENGINE, write_experiment

TF_HEADER = "from nrp_core import *\nfrom nrp_core.data.nrp_json import *\n"


def _config(*files: str, status: str | None = None) -> dict:
    doc: dict = {"DataPackProcessingFunctions": [{"Name": Path(f).stem, "FileName": f} for f in files]}
    if status:
        doc["StatusFunction"] = {"Name": "status", "FileName": status}
    return doc


def _write(directory: Path, name: str, body: str) -> None:
    (directory / name).write_text(TF_HEADER + body)


# -- decorators ---------------------------------------------------------------------------------------


def test_decorators_build_a_function_with_its_inputs_and_stay_callable() -> None:
    @EngineDataPack("a", DataPackIdentifier("state", "engine_a"))
    @EngineDataPacks("many", ["x", "y"], "engine_b")
    @SimulationTime("t")
    @TransceiverFunction("engine_a")
    def transceiver(a, many, t):
        return [a, many, t]

    assert isinstance(transceiver, Function)
    assert transceiver.kind == "TransceiverFunction" and transceiver.engine_name == "engine_a"
    assert sorted(spec.keyword for spec in transceiver.inputs) == ["a", "many", "t"]
    assert sorted(transceiver.requested_keys()) == [
        (("state", "engine_a"), ""),
        (("x", "engine_b"), ""),
        (("y", "engine_b"), ""),
    ]
    assert transceiver(a=1, many=2, t=3) == [1, 2, 3]


def test_input_decorator_below_the_function_decorator_is_rejected() -> None:
    with pytest.raises(TypeError, match="must be placed above"):

        @TransceiverFunction("engine_a")
        @EngineDataPack("a", DataPackIdentifier("state", "engine_a"))
        def transceiver(a):
            return []


def test_status_function_decorator_has_no_engine() -> None:
    @StatusFunction()
    def status():
        return False, []

    assert status.kind == "StatusFunction" and status.engine_name is None


# -- loading --------------------------------------------------------------------------------------------


def test_files_share_one_global_namespace_in_load_order(tmp_path: Path) -> None:
    _write(tmp_path, "first.py", "SHARED = [1]\n\n@TransceiverFunction('e')\ndef first():\n    return []\n")
    _write(
        tmp_path, "second.py", "SHARED.append(2)\n\n@TransceiverFunction('e')\ndef second():\n    return []\n"
    )
    functions = load_functions(_config("first.py", "second.py"), tmp_path)
    assert [f.name for f in functions.transceivers] == ["first", "second"]
    assert functions.namespace["SHARED"] == [1, 2]


def test_inactive_entries_are_not_even_loaded(tmp_path: Path) -> None:
    _write(tmp_path, "broken.py", "raise RuntimeError('must not be executed')\n")
    config = {"DataPackProcessingFunctions": [{"Name": "broken", "FileName": "broken.py", "IsActive": False}]}
    assert load_functions(config, tmp_path).functions == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("X = 1\n", "must register exactly one function, it registered 0"),
        (
            "@TransceiverFunction('e')\ndef a():\n    return []\n\n@TransceiverFunction('e')\ndef b():\n"
            "    return []\n",
            "it registered 2",
        ),
        ("@StatusFunction()\ndef s():\n    return False, []\n", "listed under DataPackProcessingFunctions"),
    ],
)
def test_each_file_registers_exactly_one_function_of_the_listed_kind(
    tmp_path: Path, body: str, message: str
) -> None:
    _write(tmp_path, "tf.py", body)
    with pytest.raises(FunctionLoadError, match=message):
        load_functions(_config("tf.py"), tmp_path)


def test_duplicate_names_and_missing_files_are_errors(tmp_path: Path) -> None:
    _write(tmp_path, "tf.py", "@TransceiverFunction('e')\ndef a():\n    return []\n")
    twice = {"DataPackProcessingFunctions": [{"Name": "x", "FileName": "tf.py"}] * 2}
    with pytest.raises(FunctionLoadError, match="used twice"):
        load_functions(twice, tmp_path)
    with pytest.raises(FunctionLoadError, match="does not exist"):
        load_functions(_config("missing.py"), tmp_path)


def test_a_load_error_names_the_file_and_line(tmp_path: Path) -> None:
    _write(tmp_path, "tf.py", "X = 1\nraise ValueError('bad module')\n")
    with pytest.raises(FunctionLoadError) as info:
        load_functions(_config("tf.py"), tmp_path)
    assert "tf.py:4" in str(info.value)  # two header lines, then the raise on line 2 of the body
    assert "ValueError: bad module" in str(info.value)


def test_preprocessing_inputs_must_belong_to_its_engine(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "pf.py",
        "@EngineDataPack('d', DataPackIdentifier('state', 'other'))\n@PreprocessingFunction('mine')\n"
        "def pf(d):\n    return []\n",
    )
    with pytest.raises(FunctionLoadError, match="must belong to its engine 'mine'"):
        load_functions(_config("pf.py"), tmp_path)


# -- calling, through the loop -----------------------------------------------------------------------


def _run(directory: Path, iterations: int = 1, **kwargs) -> tuple[NrpCore, tuple]:
    client = NrpCore("localhost:5345", experiment_folder=str(directory), log_output=None)
    client.initialize()
    try:
        result = client.run_loop(iterations, **kwargs)
    except Exception:
        client.shutdown()
        raise
    return client, result


def test_preprocessing_transceiver_status_chain_with_time_and_iteration(tmp_path: Path) -> None:
    pf = """
    from nrp_core import *
    from nrp_core.data.nrp_json import JsonDataPack

    @EngineDataPack("state", DataPackIdentifier("state", "engine"))
    @PreprocessingFunction("engine")
    def pf(state):
        doubled = JsonDataPack("doubled", "engine")
        doubled.data["value"] = state.data["steps"] * 2
        return [doubled]
    """
    tf = """
    from nrp_core import *
    from nrp_core.data.nrp_json import JsonDataPack

    @PreprocessedDataPack("doubled", DataPackIdentifier("doubled", "engine"))
    @SimulationTime("time_ns")
    @SimulationIteration("iteration")
    @TransceiverFunction("engine")
    def tf(doubled, time_ns, iteration):
        sent = JsonDataPack("input", "engine")
        sent.data["doubled"] = doubled.data["value"]
        sent.data["time_ns"] = time_ns
        sent.data["iteration"] = iteration
        return [sent]
    """
    status = """
    from nrp_core import *

    @PreprocessedDataPack("sent", DataPackIdentifier("input", "engine"))
    @EngineDataPacks("states", ["state"], "engine")
    @StatusFunction()
    def status(sent, states):
        return False, [sent, states["state"]]
    """
    write_experiment(tmp_path, {"engine": (COUNTING_ENGINE, 0.01)}, {"pf": pf, "tf": tf}, status)
    client = NrpCore("localhost:5345", experiment_folder=str(tmp_path), log_output=None)
    client.initialize()
    try:
        done, timeout, trajectory = client.run_until_timeout()
    finally:
        client.shutdown()
    assert (done, timeout, len(trajectory)) == (False, True, 200)
    sent, state = trajectory[6], trajectory[7]  # batch 3, t = 30 ms
    assert sent == {"doubled": 6, "iteration": 3, "time_ns": 30_000_000}
    # The engine received what the TF sent in batch 2, before its step ending at 30 ms.
    assert state == {
        "input": {"doubled": 4, "iteration": 2, "time_ns": 20_000_000},
        "steps": 3,
        "time": 30_000_000,
    }


def test_returning_a_tuple_fails_with_the_list_rule(tmp_path: Path) -> None:
    tf = """
    from nrp_core import *

    @TransceiverFunction("engine")
    def tf():
        return ()
    """
    write_experiment(tmp_path, {"engine": (COUNTING_ENGINE, 0.01)}, {"tf": tf})
    with pytest.raises(RuntimeError, match="must return a list of DataPacks") as info:
        _run(tmp_path)
    assert 'Function "tf"' in str(info.value)


def test_a_raising_function_is_reported_with_file_line_and_traceback(tmp_path: Path) -> None:
    tf = """
    from nrp_core import *

    @SimulationIteration("i")
    @TransceiverFunction("engine")
    def tf(i):
        if i == 2:
            raise ZeroDivisionError("boom at iteration 2")
        return []
    """
    write_experiment(tmp_path, {"engine": (COUNTING_ENGINE, 0.01)}, {"tf": tf})
    client = NrpCore("localhost:5345", experiment_folder=str(tmp_path), log_output=None)
    client.initialize()
    client.run_loop(2)
    with pytest.raises(RuntimeError) as info:
        client.run_loop(1)
    text = str(info.value)
    assert text.startswith('Request failed with error "Function "tf" (tf.py:8): ZeroDivisionError: boom')
    assert "Traceback (most recent call last)" in text and 'tf.py", line 8' in text
    assert text.endswith('The only possible action now is "shutdown()".')
    assert client.current_state() == "Failed"
    with pytest.raises(RuntimeError, match="boom at iteration 2"):
        client.run_loop(1)
    client.shutdown()
    assert client.current_state() == "Created"


def test_a_missing_datapack_names_its_id(tmp_path: Path) -> None:
    tf = """
    from nrp_core import *

    @PreprocessedDataPack("never", DataPackIdentifier("never_made", "engine"))
    @TransceiverFunction("engine")
    def tf(never):
        return []
    """
    write_experiment(tmp_path, {"engine": (COUNTING_ENGINE, 0.01)}, {"tf": tf})
    with pytest.raises(RuntimeError, match="Couldn't find datapack with ID name 'never_made'"):
        _run(tmp_path)


def test_preprocessing_outputs_must_belong_to_its_engine(tmp_path: Path) -> None:
    pf = """
    from nrp_core import *
    from nrp_core.data.nrp_json import JsonDataPack

    @PreprocessingFunction("engine")
    def pf():
        return [JsonDataPack("x", "elsewhere")]
    """
    write_experiment(tmp_path, {"engine": (COUNTING_ENGINE, 0.01)}, {"pf": pf})
    with pytest.raises(RuntimeError, match="its outputs must belong to its engine 'engine'"):
        _run(tmp_path)


MUTATING_TF = """
from nrp_core import *

@EngineDataPack("state", DataPackIdentifier("state", "engine"))
@TransceiverFunction("engine")
def tf(state):
    state.data["touched"] = True
    return []
"""

OBSERVING_SF = """
from nrp_core import *

@EngineDataPack("state", DataPackIdentifier("state", "engine"))
@StatusFunction()
def status(state):
    return True, [state]
"""


@pytest.mark.parametrize(
    ("policy", "touched"),
    [
        ({}, True),
        ({"FunctionArgumentsPassingMethod": "value"}, False),
        ({"DataPackPassingPolicy": "value"}, False),
    ],
)
def test_passing_policy_reference_or_value(tmp_path: Path, policy: dict, touched: bool) -> None:
    write_experiment(
        tmp_path, {"engine": (COUNTING_ENGINE, 0.01)}, {"tf": MUTATING_TF}, OBSERVING_SF, **policy
    )
    client, (done, trajectory) = _run(tmp_path)
    client.shutdown()
    assert done is True
    assert ("touched" in trajectory[0]) is touched


def test_a_broken_function_file_fails_initialize_and_stops_the_engines(tmp_path: Path) -> None:
    tf = """
    from nrp_core import *

    undefined_name + 1
    """
    write_experiment(tmp_path, {"engine": (COUNTING_ENGINE, 0.01)}, {"tf": tf}, in_process=False)
    client = NrpCore("localhost:5345", experiment_folder=str(tmp_path), log_output=None)
    expected = r"error while loading function file 'tf.py' \(tf.py:4\): NameError"
    with pytest.raises(RuntimeError, match=expected):
        client.initialize()
    assert client.current_state() == "Failed"
    client.shutdown()
    assert client.current_state() == "Created"
