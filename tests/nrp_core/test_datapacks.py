"""Datapack identity (name and engine), the datapack base class and JSON datapacks."""

import copy
import json

import numpy as np
import pytest

from nrp_core.data.nrp_json import (
    JSON_DATAPACK_TYPE,
    JsonDataPack,
    JsonRawData,
    NlohmannJson,
    SimulationStatus,
)
from nrp_core.datapacks import DataPackIdentifier, DataPackInterface, EmptyDataPackError

# -- DataPackIdentifier ------------------------------------------------------------------------


def test_identifier_attributes_and_default_type():
    ident = DataPackIdentifier("dp", "engine")
    assert (ident.name, ident.engine_name, ident.type) == ("dp", "engine", "")
    assert DataPackIdentifier("dp", "engine", "t").type == "t"


def test_identifier_identity_ignores_type():
    a = DataPackIdentifier("dp", "engine", "type_a")
    b = DataPackIdentifier("dp", "engine", "type_b")
    assert a == b
    assert hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert a != DataPackIdentifier("dp", "other", "type_a")
    assert a != DataPackIdentifier("other", "engine", "type_a")
    assert a != ("dp", "engine")


def test_identifier_repr_names_all_fields():
    assert repr(DataPackIdentifier("dp", "e", "t")) == "DataPackIdentifier('dp', 'e', 't')"


# -- DataPackInterface (the empty placeholder) ---------------------------------------------------


def test_placeholder_is_empty_and_has_no_data():
    placeholder = DataPackInterface("dp", "engine", JSON_DATAPACK_TYPE)
    assert placeholder.isEmpty()
    assert (placeholder.name, placeholder.engine_name) == ("dp", "engine")
    assert placeholder.type == JSON_DATAPACK_TYPE
    assert placeholder.id == DataPackIdentifier("dp", "engine")
    assert placeholder.id.type == JSON_DATAPACK_TYPE
    with pytest.raises(EmptyDataPackError, match="dp"):
        _ = placeholder.data


def test_updated_flag_follows_runtime_hook():
    datapack = JsonDataPack("dp", "engine")
    assert datapack.isUpdated()
    datapack._set_updated(False)
    assert not datapack.isUpdated()
    datapack._set_updated(True)
    assert datapack.isUpdated()


def test_str_is_three_line_description():
    datapack = JsonDataPack("dp", "engine")
    datapack.data["b"] = 2
    datapack.data["a"] = "x"
    assert str(datapack) == '- name: dp\n- engine: engine\n- data: {"a":"x","b":2}'
    assert str(DataPackInterface("dp", "engine", "t")).splitlines()[0] == "- name: dp"


# -- JsonDataPack -----------------------------------------------------------------------------


def test_new_json_datapack_holds_null_and_is_not_empty():
    datapack = JsonDataPack("dp", "engine")
    assert not datapack.isEmpty()
    assert datapack.data.json_type() == "null"
    assert datapack.to_json() is None
    assert datapack.type == JsonDataPack.getType() == JSON_DATAPACK_TYPE
    assert isinstance(datapack, DataPackInterface)


def test_data_attribute_is_read_only():
    datapack = JsonDataPack("dp", "engine")
    with pytest.raises(AttributeError, match="read-only"):
        datapack.data = {"a": 1}
    with pytest.raises(AttributeError):
        JsonRawData().data = 1


def test_item_assignment_makes_object_and_append_makes_array():
    datapack = JsonDataPack("dp", "engine")
    datapack.data["k"] = 1
    assert datapack.data.json_type() == "object"
    array = JsonDataPack("dp2", "engine")
    array.data.append(1)
    array.data.append("two")
    assert array.data.json_type() == "array"
    assert array.to_json() == [1, "two"]
    assert len(array.data) == 2


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        ({"a": 1}, "object"),
        ([1], "array"),
        ("s", "string"),
        (True, "boolean"),
        (1, "number"),
        (1.5, "number"),
    ],
)
def test_json_type_names(value, name):
    assert NlohmannJson(value).json_type() == name


def test_indexing_returns_converted_copies():
    datapack = JsonDataPack.from_json("dp", "engine", {"a": {"b": 0}, "l": [1, [2, 3]]})
    nested = datapack.data["a"]
    assert nested == {"b": 0} and type(nested) is dict
    nested["b"] = 1
    assert datapack.data["a"] == {"b": 0}
    copied_list = datapack.data["l"]
    copied_list[1].append(4)
    assert datapack.to_json() == {"a": {"b": 0}, "l": [1, [2, 3]]}
    assert datapack.data["l"][1] == [2, 3]


def test_array_indexing():
    data = NlohmannJson([10, {"x": 1}])
    assert data[0] == 10
    assert data[1] == {"x": 1}
    with pytest.raises(IndexError):
        data[2]
    with pytest.raises(IndexError):
        data[-1]
    with pytest.raises(IndexError):
        data["x"]


def test_missing_key_raises_key_error_and_scalars_raise_index_error():
    with pytest.raises(KeyError):
        NlohmannJson({"a": 1})["b"]
    with pytest.raises(IndexError):
        NlohmannJson({"a": 1})[0]
    for scalar in (None, 1, "text", True, 2.5):
        with pytest.raises(IndexError):
            NlohmannJson(scalar)["a"]
        with pytest.raises(IndexError):
            NlohmannJson(scalar)[0]


def test_item_assignment_rules():
    data = NlohmannJson()
    with pytest.raises(TypeError):
        data[0] = 1
    array = NlohmannJson([1, 2])
    with pytest.raises(TypeError):
        array["a"] = 1
    with pytest.raises(TypeError):
        array[0] = 1
    with pytest.raises(TypeError):
        NlohmannJson("text")["a"] = 1
    with pytest.raises(TypeError):
        NlohmannJson({"a": 1}).append(2)


def test_accepted_value_types():
    data = NlohmannJson()
    data["none"] = None
    data["bool"] = True
    data["int"] = 3
    data["float"] = 2.5
    data["str"] = "s"
    data["list"] = [1, "a", None]
    data["tuple"] = (1, (2, 3))
    data["dict"] = {"z": 1, "a": [1]}
    assert data.to_json() == {
        "bool": True,
        "dict": {"a": [1], "z": 1},
        "float": 2.5,
        "int": 3,
        "list": [1, "a", None],
        "none": None,
        "str": "s",
        "tuple": [1, [2, 3]],
    }
    assert type(data["bool"]) is bool
    assert type(data["tuple"]) is list


@pytest.mark.parametrize(
    "dtype",
    [
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float32,
        np.float64,
    ],
)
def test_numpy_one_dimensional_arrays_are_accepted(dtype):
    data = NlohmannJson()
    data["a"] = np.arange(3, dtype=dtype)
    assert data["a"] == [0, 1, 2]
    assert all(type(item) in (int, float) for item in data["a"])


@pytest.mark.parametrize(
    "value",
    [
        object(),
        {1, 2},
        b"bytes",
        np.zeros((2, 2)),
        np.array([True, False]),
        np.array(["a"]),
        np.zeros(2, dtype=np.float16),
        np.zeros(2, dtype=np.complex64),
        {"a": object()},
        [object()],
        {1: "a"},
    ],
)
def test_unsupported_values_raise_type_error(value):
    data = NlohmannJson()
    with pytest.raises(TypeError):
        data["a"] = value
    assert data.json_type() == "null"
    array = NlohmannJson()
    with pytest.raises(TypeError):
        array.append(value)
    assert array.json_type() == "null"


def test_object_keys_are_sorted_and_str_is_compact_json():
    data = NlohmannJson()
    data["b"] = 1
    data["c"] = {"y": 1, "x": [1, 2]}
    data["a"] = 2
    assert data.keys() == ["a", "b", "c"]
    assert list(data.to_json()) == ["a", "b", "c"]
    assert list(data["c"]) == ["x", "y"]
    assert str(data) == '{"a":2,"b":1,"c":{"x":[1,2],"y":1}}'
    assert json.loads(str(data)) == data.to_json()
    round_tripped = JsonDataPack.from_json("dp", "e", {"z": 1, "m": {"q": 1, "b": 2}, "a": 0})
    assert list(round_tripped.to_json()) == ["a", "m", "z"]
    assert list(round_tripped.to_json()["m"]) == ["b", "q"]


def test_keys_only_on_objects():
    assert NlohmannJson({"a": 1}).keys() == ["a"]
    with pytest.raises(TypeError):
        NlohmannJson([1]).keys()
    with pytest.raises(TypeError):
        NlohmannJson().keys()


def test_len_iteration_and_membership():
    assert len(NlohmannJson()) == 0
    assert len(NlohmannJson({"a": 1, "b": 2})) == 2
    assert len(NlohmannJson([1, 2, 3])) == 3
    assert len(NlohmannJson("text")) == 1
    assert list(NlohmannJson({"b": 1, "a": 2})) == ["a", "b"]
    assert list(NlohmannJson([1, [2]])) == [1, [2]]
    assert "a" in NlohmannJson({"a": 1})
    assert "b" not in NlohmannJson({"a": 1})
    with pytest.raises(TypeError):
        iter(NlohmannJson(5))


def test_equality_with_plain_values():
    assert NlohmannJson({"a": 1}) == {"a": 1}
    assert NlohmannJson([1]) == NlohmannJson([1])
    assert NlohmannJson() == None  # noqa: E711 - JSON null compares to None


def test_simulation_status_is_nlohmann_json():
    assert SimulationStatus is NlohmannJson


# -- runtime conversion helpers -----------------------------------------------------------------


def test_from_json_none_gives_non_empty_null_datapack():
    datapack = JsonDataPack.from_json("dp", "engine", None)
    assert not datapack.isEmpty()
    assert datapack.data.json_type() == "null"
    assert datapack.isUpdated()
    assert datapack.id == DataPackIdentifier("dp", "engine")


def test_from_json_copies_unless_adopting():
    source = {"a": [1, 2]}
    copied = JsonDataPack.from_json("dp", "e", source)
    source["a"].append(3)
    assert copied.to_json() == {"a": [1, 2]}
    adopted = JsonDataPack.from_json("dp", "e", source, adopt=True)
    assert adopted.data._value is source


def test_from_json_rejects_non_json_values():
    with pytest.raises(TypeError):
        JsonDataPack.from_json("dp", "e", {"a": object()})


def test_to_json_returns_deep_copy():
    datapack = JsonDataPack.from_json("dp", "e", {"a": {"b": [1]}})
    out = datapack.to_json()
    out["a"]["b"].append(2)
    assert datapack.to_json() == {"a": {"b": [1]}}
    assert datapack.data.to_json() == {"a": {"b": [1]}}


def test_deep_copy_keeps_updated_flag_and_detaches_data():
    datapack = JsonDataPack.from_json("dp", "e", {"a": [1]})
    datapack._set_updated(False)
    clone = copy.deepcopy(datapack)
    assert isinstance(clone, JsonDataPack)
    assert not clone.isUpdated()
    clone.data["a"] = 2
    assert datapack.to_json() == {"a": [1]}
    placeholder = DataPackInterface("dp", "e", "t")
    assert copy.deepcopy(placeholder).isEmpty()


def test_raw_data_has_json_value_without_identity():
    raw = JsonRawData()
    assert raw.data.json_type() == "null"
    raw.data["test_data"] = 5
    assert raw.to_json() == {"test_data": 5}
    assert str(raw) == '{"test_data":5}'
    assert not hasattr(raw, "engine_name")
    assert JsonRawData.from_json({"i": 1}).to_json() == {"i": 1}
    assert JsonRawData.getType() == JSON_DATAPACK_TYPE
