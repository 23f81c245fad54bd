"""Datapack identity (name, engine name, type) and the datapack base class.

A datapack is identified by the pair (datapack name, engine name); its type string travels with it
but never takes part in identity, so pools keyed by :class:`DataPackIdentifier` match a datapack
whatever type string a function or an engine attached to it.
"""

from __future__ import annotations

from typing import Any

from nrp_core.errors import EmptyDataPackError

__all__ = ["DataPackIdentifier", "DataPackInterface", "EmptyDataPackError"]


class DataPackIdentifier:
    """The identity of a datapack: its name and the name of the engine it belongs to.

    Args:
        name: the datapack name.
        engine_name: the name of the engine owning the datapack.
        type: an opaque type string (e.g. ``JsonDataPack.getType()``); informative only.

    Two identifiers are equal, and hash alike, when their ``name`` and ``engine_name`` are equal.
    """

    __slots__ = ("name", "engine_name", "type")

    def __init__(self, name: str, engine_name: str, type: str = "") -> None:
        self.name = name
        self.engine_name = engine_name
        self.type = type

    @property
    def key(self) -> tuple[str, str]:
        """The ``(name, engine_name)`` pair that defines identity."""
        return (self.name, self.engine_name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DataPackIdentifier):
            return self.name == other.name and self.engine_name == other.engine_name
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.name, self.engine_name))

    def __repr__(self) -> str:
        return f"DataPackIdentifier({self.name!r}, {self.engine_name!r}, {self.type!r})"


class DataPackInterface:
    """Base class of every datapack; a bare instance is the id-only (empty) placeholder.

    The runtime creates a bare ``DataPackInterface`` when an engine answers a request with no data
    at all; ``isEmpty()`` is then true and reading ``data`` raises :class:`EmptyDataPackError`.
    Concrete datapacks (``JsonDataPack``) override ``isEmpty()`` and ``data``.

    ``isUpdated()`` is true in the step in which the datapack was created or received; the loop
    marks pooled datapacks stale with :meth:`_set_updated` after every datapack cycle.

    Args:
        name: the datapack name.
        engine_name: the name of the engine the datapack belongs to.
        type: the opaque type string.
    """

    __slots__ = ("_name", "_engine_name", "_type", "_updated")

    def __init__(self, name: str, engine_name: str, type: str) -> None:
        self._name = name
        self._engine_name = engine_name
        self._type = type
        self._updated = True

    @property
    def name(self) -> str:
        """The datapack name."""
        return self._name

    @property
    def engine_name(self) -> str:
        """The name of the engine the datapack belongs to."""
        return self._engine_name

    @property
    def type(self) -> str:
        """The opaque type string."""
        return self._type

    @property
    def id(self) -> DataPackIdentifier:
        """A new :class:`DataPackIdentifier` for this datapack."""
        return DataPackIdentifier(self._name, self._engine_name, self._type)

    @property
    def key(self) -> tuple[str, str]:
        """The ``(name, engine_name)`` identity pair, cheaper than :attr:`id` for pool lookups."""
        return (self._name, self._engine_name)

    @property
    def data(self) -> Any:
        """The payload; the bare placeholder has none and raises."""
        raise EmptyDataPackError(
            f"DataPack '{self._name}' of engine '{self._engine_name}' is empty: it holds no data"
        )

    def isEmpty(self) -> bool:
        """True only for the id-only placeholder created when an engine returned no data."""
        return True

    def isUpdated(self) -> bool:
        """True in the step in which the datapack was created or received."""
        return self._updated

    def _set_updated(self, flag: bool) -> None:
        """Runtime hook: mark the datapack fresh (True) or stale (False)."""
        self._updated = flag

    def _deep_copy(self) -> DataPackInterface:
        """Runtime hook for pass-by-value: an independent copy keeping ``isUpdated()``."""
        clone = DataPackInterface(self._name, self._engine_name, self._type)
        clone._updated = self._updated
        return clone

    def __copy__(self) -> DataPackInterface:
        return self._deep_copy()

    def __deepcopy__(self, memo: dict) -> DataPackInterface:
        return self._deep_copy()

    def _data_text(self) -> str:
        return "<empty>"

    def __str__(self) -> str:
        return f"- name: {self._name}\n- engine: {self._engine_name}\n- data: {self._data_text()}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, {self._engine_name!r})"
