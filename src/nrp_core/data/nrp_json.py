"""JSON datapacks and the ``NlohmannJson`` value (nrp-core's Python wrapper of nlohmann::json).

``NlohmannJson`` keeps the JSON value semantics of nrp-core's binding of nlohmann::json: a value
is JSON null until item assignment turns it into an object or ``append`` into an array, indexing
returns converted Python copies, and object keys are kept sorted.

The value is stored as a plain Python JSON value (dict, list, str, int, float, bool, None), never
as text, so the runtime can move datapacks between engines and functions without serializing them:
:meth:`JsonDataPack.from_json` and :meth:`JsonDataPack.to_json` are the fast conversion paths.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

from nrp_core.datapacks import DataPackInterface

__all__ = [
    "JSON_DATAPACK_TYPE",
    "JsonDataPack",
    "JsonRawData",
    "NlohmannJson",
    "SimulationStatus",
]

JSON_DATAPACK_TYPE = "nrp_json::JsonDataPack"
"""The type string of JSON datapacks, as reported by ``JsonDataPack.getType()`` and JSON engines."""

_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
_NUMPY_KINDS = frozenset({"i", "u", "f"})
_NUMPY_FLOAT_SIZES = frozenset({4, 8})

_JSON_TYPE_NAMES = {
    type(None): "null",
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
}


def _normalize(value: Any) -> Any:
    """Return a new plain JSON value for ``value``: dict keys sorted, tuples and numpy arrays as lists.

    Raises:
        TypeError: a value (or a nested one) is not convertible to JSON.
    """
    kind = type(value)
    if kind in _SCALAR_TYPES:
        return value
    if kind is dict:
        return _normalize_object(value)
    if kind is list or kind is tuple:
        return _normalize_list(value)
    if kind is NlohmannJson:
        return _copy(value._value)
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return _normalize_array(value)
    # Subclasses of the accepted types (numpy.float64 is a float, OrderedDict a dict, ...).
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return _normalize_object(value)
    if isinstance(value, (list, tuple)):
        return _normalize_list(value)
    raise TypeError(f"Object of type {kind.__name__} cannot be converted to JSON")


def _normalize_object(value: dict) -> dict:
    try:
        ordered = sorted(value)
    except TypeError:
        raise TypeError(f"JSON object keys must be str, got keys {list(value)!r}") from None
    result = {}
    for key in ordered:
        if type(key) is not str:
            raise TypeError(f"JSON object keys must be str, not {type(key).__name__} ({key!r})")
        item = value[key]
        result[key] = item if type(item) in _SCALAR_TYPES else _normalize(item)
    return result


def _normalize_list(value: list | tuple) -> list:
    return [item if type(item) in _SCALAR_TYPES else _normalize(item) for item in value]


def _normalize_array(array: Any) -> list:
    dtype = array.dtype
    if array.ndim != 1:
        raise TypeError(f"Only 1-D numpy arrays can be converted to JSON, got {array.ndim}-D")
    if dtype.kind not in _NUMPY_KINDS or (dtype.kind == "f" and dtype.itemsize not in _NUMPY_FLOAT_SIZES):
        raise TypeError(f"numpy arrays of dtype {dtype} cannot be converted to JSON")
    return array.tolist()


def _copy(value: Any) -> Any:
    """Deep copy of an already normalized JSON value (no checks, order preserved)."""
    kind = type(value)
    if kind is dict:
        result = value.copy()
        for key, item in value.items():
            if type(item) not in _SCALAR_TYPES:
                result[key] = _copy(item)
        return result
    if kind is list:
        result = value.copy()
        for index, item in enumerate(value):
            if type(item) not in _SCALAR_TYPES:
                result[index] = _copy(item)
        return result
    return value


def _to_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


class NlohmannJson:
    """A JSON value with nlohmann::json semantics.

    - A new value is JSON null; item assignment turns null into an object, ``append`` into an array.
    - ``value[key]`` returns a converted Python copy (dict, list, str, int, float, bool, None), so
      ``value["a"]["b"] = 1`` does not write back. A missing object key raises ``KeyError``; a bad
      index, an index out of range or indexing a scalar or null raises ``IndexError``.
    - ``value[key] = item`` takes str keys only and is refused on arrays and scalars (``TypeError``).
      Items may be None, bool, int, float, str, list, tuple (stored as an array), dict, or 1-D
      numpy arrays of (u)int8 to (u)int64, float32 or float64; anything else raises ``TypeError``.
    - Object keys are kept sorted; ``str()`` is compact JSON.

    Args:
        value: an initial plain JSON value (converted and copied); default JSON null.
    """

    __slots__ = ("_value",)

    def __init__(self, value: Any = None) -> None:
        self._value = _normalize(value)

    @classmethod
    def _adopt(cls, value: Any) -> NlohmannJson:
        """Wrap a plain JSON value without copying or checking it (runtime fast path)."""
        obj = cls.__new__(cls)
        obj._value = value
        return obj

    # -- reading -----------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        value = self._value
        kind = type(value)
        if kind is dict:
            if type(key) is not str:
                raise IndexError(f"JSON objects are indexed by str keys, not {type(key).__name__}")
            try:
                return _copy(value[key])
            except KeyError:
                raise KeyError(key) from None
        if kind is list:
            if type(key) is not int:
                raise IndexError(f"JSON arrays are indexed by int, not {type(key).__name__}")
            if not 0 <= key < len(value):
                raise IndexError(f"JSON array index {key} out of range (size {len(value)})")
            return _copy(value[key])
        raise IndexError(f"cannot index a JSON {self.json_type()}")

    def __len__(self) -> int:
        value = self._value
        if type(value) is dict or type(value) is list:
            return len(value)
        return 0 if value is None else 1

    def __iter__(self) -> Iterator[Any]:
        value = self._value
        if type(value) is dict:
            return iter(list(value))
        if type(value) is list:
            return iter(_copy(value))
        if value is None:
            return iter(())
        raise TypeError(f"a JSON {self.json_type()} is not iterable")

    def __contains__(self, item: Any) -> bool:
        value = self._value
        if type(value) is dict or type(value) is list:
            return item in value
        return False

    def keys(self) -> list[str]:
        """The keys of a JSON object, sorted.

        Raises:
            TypeError: the value is not an object.
        """
        if type(self._value) is not dict:
            raise TypeError(f"keys() needs a JSON object, this is a JSON {self.json_type()}")
        return list(self._value)

    def json_type(self) -> str:
        """One of ``null``, ``object``, ``array``, ``string``, ``boolean``, ``number``."""
        return _JSON_TYPE_NAMES[type(self._value)]

    def to_json(self) -> Any:
        """A deep copy of the value as plain Python JSON (dict, list, str, int, float, bool, None)."""
        return _copy(self._value)

    # -- writing -----------------------------------------------------------------------------

    def __setitem__(self, key: Any, item: Any) -> None:
        if type(key) is not str:
            raise TypeError(f"JSON item assignment takes str keys, not {type(key).__name__}")
        value = self._value
        if value is not None and type(value) is not dict:
            raise TypeError(f"item assignment is not supported on a JSON {self.json_type()}")
        item = _normalize(item)
        if value is None:
            value = self._value = {}
        if key in value or not value or key > next(reversed(value)):
            value[key] = item
        else:
            value[key] = item
            self._value = {k: value[k] for k in sorted(value)}

    def append(self, item: Any) -> None:
        """Append ``item`` to a JSON array (a null value becomes an array first).

        Raises:
            TypeError: the value is neither null nor an array, or ``item`` is not convertible.
        """
        value = self._value
        if value is not None and type(value) is not list:
            raise TypeError(f"append() needs a JSON array, this is a JSON {self.json_type()}")
        item = _normalize(item)
        if value is None:
            value = self._value = []
        value.append(item)

    # -- text and comparison ---------------------------------------------------------------

    def __str__(self) -> str:
        return _to_text(self._value)

    def __repr__(self) -> str:
        return f"NlohmannJson({_to_text(self._value)})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NlohmannJson):
            return self._value == other._value
        return self._value == other

    __hash__ = None  # type: ignore[assignment]


SimulationStatus = NlohmannJson
"""nrp-core's name for the JSON value exchanged with status functions."""


class JsonDataPack(DataPackInterface):
    """A datapack holding a JSON value (``data``, an :class:`NlohmannJson`).

    A new datapack holds JSON null. ``data`` is read-only as an attribute: mutate it in place
    (``dp.data["k"] = v``), never assign ``dp.data = ...``.

    Args:
        name: the datapack name.
        engine_name: the name of the engine the datapack belongs to.
    """

    __slots__ = ("_data",)

    def __init__(self, name: str, engine_name: str) -> None:
        self._name = name
        self._engine_name = engine_name
        self._type = JSON_DATAPACK_TYPE
        self._updated = True
        self._data = NlohmannJson._adopt(None)

    @staticmethod
    def getType() -> str:
        """The opaque type string shared by every JSON datapack."""
        return JSON_DATAPACK_TYPE

    @classmethod
    def from_json(cls, name: str, engine_name: str, value: Any, *, adopt: bool = False) -> JsonDataPack:
        """A non-empty JSON datapack holding ``value`` (``None`` gives a JSON-null datapack).

        Args:
            name: the datapack name.
            engine_name: the engine name.
            value: a plain Python JSON value.
            adopt: if true, ``value`` is taken over as is, without copy or check; only for fresh
                values the caller will not touch again (e.g. just decoded from JSON text).

        Raises:
            TypeError: ``value`` is not convertible to JSON (only when ``adopt`` is false).
        """
        datapack = cls.__new__(cls)
        datapack._name = name
        datapack._engine_name = engine_name
        datapack._type = JSON_DATAPACK_TYPE
        datapack._updated = True
        datapack._data = NlohmannJson._adopt(value if adopt else _normalize(value))
        return datapack

    @property
    def data(self) -> NlohmannJson:
        """The JSON value, mutable in place."""
        return self._data

    @data.setter
    def data(self, _value: Any) -> None:
        raise AttributeError("JsonDataPack.data is read-only: modify it in place (dp.data['key'] = value)")

    def isEmpty(self) -> bool:
        """Always false: a JSON datapack always holds a value, possibly JSON null."""
        return False

    def to_json(self) -> Any:
        """A deep copy of the data as a plain Python JSON value."""
        return _copy(self._data._value)

    def _deep_copy(self) -> JsonDataPack:
        datapack = JsonDataPack.from_json(self._name, self._engine_name, _copy(self._data._value), adopt=True)
        datapack._updated = self._updated
        return datapack

    def _data_text(self) -> str:
        return str(self._data)


class JsonRawData:
    """A JSON value without name or engine, for status function observations.

    ``data`` is an :class:`NlohmannJson`, read-only as an attribute like :attr:`JsonDataPack.data`.
    """

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = NlohmannJson._adopt(None)

    @staticmethod
    def getType() -> str:
        """The JSON type string (the same as :meth:`JsonDataPack.getType`)."""
        return JSON_DATAPACK_TYPE

    @classmethod
    def from_json(cls, value: Any) -> JsonRawData:
        """Raw data holding a converted copy of the plain JSON ``value``."""
        raw = cls()
        raw._data = NlohmannJson(value)
        return raw

    @property
    def data(self) -> NlohmannJson:
        """The JSON value, mutable in place."""
        return self._data

    @data.setter
    def data(self, _value: Any) -> None:
        raise AttributeError("JsonRawData.data is read-only: modify it in place (raw.data['key'] = value)")

    def isEmpty(self) -> bool:
        """Always false."""
        return False

    def to_json(self) -> Any:
        """A deep copy of the data as a plain Python JSON value."""
        return _copy(self._data._value)

    def __str__(self) -> str:
        return str(self._data)

    def __repr__(self) -> str:
        return f"JsonRawData({self._data})"
