"""Engine-side request handling: initialize, run loop, get and set datapacks, reset, shutdown."""

import sys
import traceback
from pathlib import Path

import pytest

from nrp_core.data.nrp_json import JsonDataPack
from nrp_core.engines.python_json import EngineScript, server_callbacks
from nrp_core.engines.python_json.server_callbacks import EngineServer, load_script_class
from nrp_core.errors import (
    DataPackRegistrationError,
    EngineRequestError,
    EngineScriptError,
    EngineScriptLoadError,
)

FILES = Path(__file__).parent / "files"
TIME_RATIO = [1, 1000000000]
JSON_TYPE = JsonDataPack.getType()


def engine_config(file_name="engine_counting.py", name="test_engine", **extra):
    return {
        "EngineName": name,
        "EngineType": "python_json",
        "PythonFileName": str(FILES / file_name),
        "TimeRatio": list(TIME_RATIO),
        **extra,
    }


@pytest.fixture(autouse=True)
def clean_module_script(monkeypatch):
    # Loading a script puts its folder first on sys.path: keep that out of other tests.
    monkeypatch.setattr(sys, "path", list(sys.path))
    server_callbacks.script = None
    yield
    server_callbacks.script = None


@pytest.fixture
def server():
    server = EngineServer()
    server.initialize(engine_config())
    return server


def fail_line():
    lines = (FILES / "engine_failing.py").read_text().splitlines()
    return next(number for number, text in enumerate(lines, 1) if "FAIL-LINE" in text)


# -- initialize -------------------------------------------------------------------------------------


def test_initialize_stores_name_and_the_request_as_config():
    request = engine_config(EngineID=3)
    server_callbacks.initialize(request)
    script = server_callbacks.script
    assert isinstance(script, EngineScript)
    assert script._name == "test_engine"
    assert script._config is request
    assert script.calls["initialize"] == 1
    assert script._getRegisteredDataPackNames() == ["datapack1", "datapack2"]


def test_initialize_rejects_a_script_not_deriving_from_engine_script():
    with pytest.raises(Exception, match="Script class must inherit from EngineScript class"):
        server_callbacks.initialize(engine_config("engine_not_engine_script.py"))


def test_initialize_failure_keeps_the_users_traceback():
    with pytest.raises(Exception, match="Initialization failed") as info:
        server_callbacks.initialize(engine_config("engine_failing.py", FailIn=["initialize"]))
    error = info.value
    assert isinstance(error, EngineScriptError)
    assert "RuntimeError: initialize exploded" in str(error)
    assert error.file == str(FILES / "engine_failing.py")
    assert error.line == fail_line()
    assert error.engine_name == "test_engine"
    innermost = traceback.extract_tb(error.__traceback__)[-1]
    assert (innermost.filename, innermost.lineno) == (error.file, error.line)
    assert isinstance(error.__cause__, RuntimeError)


@pytest.mark.parametrize("ratio", [[1, 1000000], [1, 1000], None, "ns"])
def test_initialize_rejects_other_time_ratios(ratio):
    with pytest.raises(Exception, match="PythonJSONEngine only support nanoseconds"):
        server_callbacks.initialize(engine_config(TimeRatio=ratio))
    assert server_callbacks.script is None


def test_initialize_load_errors():
    with pytest.raises(EngineScriptLoadError, match="not found"):
        EngineServer().initialize(engine_config("missing_engine.py"))
    with pytest.raises(EngineScriptLoadError, match="does not define a class named 'Script'"):
        EngineServer().initialize(engine_config("engine_without_script.py"))
    with pytest.raises(EngineRequestError, match="PythonFileName"):
        EngineServer().initialize({"EngineName": "e", "TimeRatio": TIME_RATIO})


def test_syntax_error_names_file_and_line(tmp_path):
    broken = tmp_path / "engine_broken.py"
    broken.write_text('"""Broken."""\n\nclass Script(\n    def nope\n')
    with pytest.raises(EngineScriptLoadError, match="engine_broken.py") as info:
        load_script_class(broken)
    assert info.value.file == str(broken)
    assert info.value.line in (3, 4)
    assert isinstance(info.value.__cause__, SyntaxError)


def test_script_files_load_by_path_with_their_folder_first_on_sys_path():
    server = EngineServer()
    server.initialize(engine_config("engine_no_super.py"))
    assert sys.path[0] == str(FILES)
    reply = server.get_datapacks({"value": {"engine_name": "test_engine", "type": JSON_TYPE}})
    assert reply == {"value": {"engine_name": "test_engine", "type": JSON_TYPE, "data": 42}}
    first = load_script_class(FILES / "engine_counting.py")
    second = load_script_class(FILES / "other" / "engine_counting.py")
    assert first is not second
    assert getattr(second, "KIND", None) == "other"
    assert first.__module__ != second.__module__


def test_relative_script_names_resolve_against_base_dir():
    server = EngineServer(base_dir=FILES)
    server.initialize(dict(engine_config(), PythonFileName="engine_counting.py"))
    assert server.script.calls["initialize"] == 1


def test_several_servers_hold_independent_scripts():
    first, second = EngineServer(), EngineServer()
    first.initialize(engine_config(name="a"))
    second.initialize(engine_config(name="b"))
    first.run_loop({"time_step": 5})
    assert (first.script._name, second.script._name) == ("a", "b")
    assert (first.script._time_ns, second.script._time_ns) == (5, 0)
    assert server_callbacks.script is None


# -- shutdown, reset, run_loop ----------------------------------------------------------------------


def test_shutdown_calls_the_hook_once():
    server_callbacks.initialize(engine_config())
    server_callbacks.shutdown(None)
    assert server_callbacks.script.calls["shutdown"] == 1


def test_shutdown_without_script_is_a_no_op():
    server_callbacks.shutdown(None)
    EngineServer().shutdown(None)


def test_shutdown_failure_propagates():
    server_callbacks.initialize(engine_config("engine_failing.py", FailIn=["shutdown"]))
    with pytest.raises(Exception, match="Shutdown failed"):
        server_callbacks.shutdown(None)
    assert server_callbacks.script.shutdown_calls == 1


def test_reset_zeroes_the_time():
    server_callbacks.initialize(engine_config())
    server_callbacks.run_loop({"time_step": 20})
    server_callbacks.reset("reset")
    assert server_callbacks.script._time_ns == 0
    assert server_callbacks.script.calls["reset"] == 1


def test_reset_failure_keeps_the_time():
    server_callbacks.initialize(engine_config("engine_failing.py", FailIn=["reset"]))
    server_callbacks.run_loop({"time_step": 20})
    with pytest.raises(Exception, match="Reset failed"):
        server_callbacks.reset("reset")
    assert server_callbacks.script._time_ns == 20


def test_run_loop_returns_cumulative_time_and_passes_the_timestep():
    server_callbacks.initialize(engine_config())
    assert server_callbacks.run_loop({"time_step": 10}) == {"time": 10}
    assert server_callbacks.run_loop({"time_step": 20}) == {"time": 30}
    # the time is advanced before runLoop is called
    assert server_callbacks.script.timesteps == [(10, 10), (20, 30)]


def test_run_loop_failure_propagates():
    server_callbacks.initialize(engine_config("engine_failing.py", FailIn=["runLoop"]))
    with pytest.raises(Exception, match="RunLoop failed") as info:
        server_callbacks.run_loop({"time_step": 10})
    assert info.value.line == fail_line()
    assert server_callbacks.script._time_ns == 10


@pytest.mark.parametrize(
    "request_json", [{"time_step": -1}, {"time_step": 1.5}, {}, None, {"time_step": True}]
)
def test_run_loop_rejects_bad_time_steps(server, request_json):
    with pytest.raises(EngineRequestError):
        server.run_loop(request_json)
    assert server.script._time_ns == 0


def test_operations_before_initialize_raise():
    server = EngineServer()
    with pytest.raises(EngineRequestError, match="not initialized"):
        server.run_loop({"time_step": 1})
    with pytest.raises(EngineRequestError, match="not initialized"):
        server.reset("reset")


# -- datapacks --------------------------------------------------------------------------------------


def test_empty_requests():
    server_callbacks.initialize(engine_config())
    assert server_callbacks.get_datapacks({}) == {}
    assert server_callbacks.get_datapacks(None) == {}
    assert server_callbacks.set_datapacks({}) is None
    assert server_callbacks.set_datapacks(None) is None
    assert server_callbacks.script._datapacks == {"datapack1": None, "datapack2": {"time": 0}}


def test_unset_datapack_is_returned_as_null():
    server_callbacks.initialize(engine_config())
    reply = server_callbacks.get_datapacks({"datapack1": {"engine_name": "test_engine", "type": "whatever"}})
    entry = reply["datapack1"]
    assert entry["engine_name"] == "test_engine"
    assert entry["type"] == JSON_TYPE
    assert entry["data"] is None


def test_set_get_round_trip_returns_the_identical_entry():
    server_callbacks.initialize(engine_config())
    entry = {"engine_name": "test_engine", "type": JSON_TYPE, "data": {"a": [1, 2], "b": "x"}}
    server_callbacks.set_datapacks({"datapack1": entry})
    reply = server_callbacks.get_datapacks({"datapack1": {"engine_name": "test_engine", "type": JSON_TYPE}})
    assert reply == {"datapack1": entry}


def test_set_does_not_check_the_engine_name(server):
    server.set_datapacks({"datapack1": {"engine_name": "elsewhere", "type": JSON_TYPE, "data": 1}})
    assert server.script._getDataPack("datapack1") == 1


def test_set_unregistered_datapack_raises(server):
    entry = {"engine_name": "test_engine", "type": JSON_TYPE, "data": 1}
    message = "Attempting to set data on an unregistered DataPack .*"
    with pytest.raises(DataPackRegistrationError, match=message):
        server.set_datapacks({"nope": entry})


@pytest.mark.parametrize(
    "entry",
    [
        {"engine_name": "test_engine", "data": 1},
        {"type": JSON_TYPE, "data": 1},
        {"engine_name": "test_engine", "type": JSON_TYPE},
        "not an object",
    ],
)
def test_set_malformed_datapack_raises(server, entry):
    with pytest.raises(EngineRequestError, match="Malformed DataPack. .*"):
        server.set_datapacks({"datapack1": entry})


def test_set_non_json_type_raises(server):
    with pytest.raises(EngineRequestError, match="only handles JSON datapacks"):
        server.set_datapacks({"datapack1": {"engine_name": "test_engine", "type": "Dump.String", "data": 1}})


def test_get_unregistered_datapack_raises(server):
    message = "Attempting to get data from an unregistered DataPack .*"
    with pytest.raises(DataPackRegistrationError, match=message):
        server.get_datapacks({"nope": {"engine_name": "test_engine", "type": JSON_TYPE}})


def test_get_from_incorrect_engine_raises(server):
    with pytest.raises(EngineRequestError, match="Requesting DataPack .* from incorrect engine .*"):
        server.get_datapacks({"datapack1": {"engine_name": "other_engine", "type": JSON_TYPE}})


def test_get_returns_the_stored_object(server):
    reply = server.get_datapacks({"datapack2": {"engine_name": "test_engine", "type": "any"}})
    assert reply["datapack2"]["data"] is server.script._getDataPack("datapack2")


def test_engine_script_errors_survive_pickling():
    import pickle

    server = EngineServer()
    with pytest.raises(EngineScriptError) as info:
        server.initialize(engine_config("engine_failing.py", FailIn=["initialize"]))
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is EngineScriptError
    assert str(copy) == str(info.value)
    assert (copy.failure, copy.file, copy.line, copy.engine_name) == (
        "Initialization failed",
        info.value.file,
        info.value.line,
        "test_engine",
    )
