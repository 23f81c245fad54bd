"""EngineScript, the base class of Python engines: datapack registration, time and the step calls."""

import pytest

from nrp_core.engines.python_json import EngineScript
from nrp_core.engines.python_json import engine_script as engine_script_module
from nrp_core.errors import DataPackRegistrationError


@pytest.fixture
def script():
    return EngineScript()


def test_module_path_exports_engine_script():
    assert engine_script_module.EngineScript is EngineScript


def test_initial_state(script):
    assert script._time_ns == 0
    assert script._datapacks == {}
    assert script._getRegisteredDataPackNames() == []


def test_register_adds_none_entry(script):
    script._registerDataPack("dp")
    assert script._datapacks == {"dp": None}
    assert script._getRegisteredDataPackNames() == ["dp"]


def test_register_twice_raises_and_keeps_one_entry(script):
    script._registerDataPack("dp")
    with pytest.raises(Exception, match=r"DataPack with specified name \(dp\) already registered"):
        script._registerDataPack("dp")
    assert script._getRegisteredDataPackNames() == ["dp"]


def test_set_stores_the_value(script):
    script._registerDataPack("dp")
    value = {"a": [1, 2]}
    script._setDataPack("dp", value)
    assert script._datapacks["dp"] is value


def test_set_unregistered_raises_and_adds_nothing(script):
    with pytest.raises(Exception, match=r"Attempting to set data on an unregistered DataPack \(dp\)"):
        script._setDataPack("dp", 1)
    assert script._datapacks == {}


def test_get_returns_none_before_set_and_the_object_after(script):
    script._registerDataPack("dp")
    assert script._getDataPack("dp") is None
    value = {"x": 1}
    script._setDataPack("dp", value)
    assert script._getDataPack("dp") is value  # the stored object itself, no copy


def test_get_unregistered_raises(script):
    message = r"Attempting to get data from an unregistered DataPack \(dp\)"
    with pytest.raises(DataPackRegistrationError, match=message):
        script._getDataPack("dp")


def test_advance_time_accumulates_from_zero(script):
    script._advanceTime(10)
    assert script._time_ns == 10
    script._advanceTime(25)
    assert script._time_ns == 35


def test_engine_name(script):
    script._name = "python_1"
    assert script._getEngineName() == "python_1"


def test_hooks_default_to_no_ops(script):
    assert script.initialize() is None
    assert script.runLoop(10) is None
    assert script.reset() is None
    assert script.shutdown() is None
    assert script._time_ns == 0


def test_state_exists_without_super_init():
    class Script(EngineScript):
        def __init__(self):
            self.own = 1

    script = Script()
    script._registerDataPack("dp")
    assert script._getRegisteredDataPackNames() == ["dp"]
    assert script._time_ns == 0
    other = Script()
    assert other._datapacks == {}  # per-instance state
