"""``EngineScript``: the base class of Python JSON engine scripts.

A user file defines ``class Script(EngineScript)``; the engine server instantiates it without
arguments, sets ``_name`` and ``_config``, then calls the hooks. The engine time ``_time_ns`` is
advanced by the server *before* ``runLoop`` is called and set to 0 after a successful ``reset``.
"""

from __future__ import annotations

from typing import Any

from nrp_core.errors import DataPackRegistrationError

__all__ = ["EngineScript", "ScriptLife"]


class ScriptLife:
    """What every Python engine script has, whatever its datapacks hold: the engine's name, config
    and time, and the hooks the engine server calls (:class:`EngineScript`, ``GrpcEngineScript``).

    Attributes:
        _time_ns: the engine time in int nanoseconds; inside ``runLoop`` it already equals the end
            time of the step.
        _name: the ``EngineName``.
        _config: the full engine config sent at initialize (defaults filled, plus ``TimeRatio``).
    """

    _time_ns: int
    _name: str
    _config: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # State lives here rather than in __init__ so that a subclass whose __init__ forgets to
        # call super().__init__() still works.
        script = super().__new__(cls)
        script._time_ns = 0
        script._name = ""
        script._config = {}
        script._new_datapack_store()
        return script

    def _new_datapack_store(self) -> None:
        """Create the (empty) datapack store of a new script."""

    # -- hooks -------------------------------------------------------------------------------

    def initialize(self) -> None:
        """Called once after ``_name`` and ``_config`` are set; register datapacks here."""

    def runLoop(self, timestep_ns: int) -> None:
        """Advance the simulation by ``timestep_ns`` (``_time_ns`` is already the step's end time)."""

    def reset(self) -> None:
        """Bring the engine back to its initial state; the server then sets ``_time_ns`` to 0."""

    def shutdown(self) -> None:
        """Release the engine's resources."""

    # -- engine name and time -----------------------------------------------------------------

    def _getEngineName(self) -> str:
        """The ``EngineName``."""
        return self._name

    def _advanceTime(self, timestep_ns: int) -> None:
        """Add ``timestep_ns`` to ``_time_ns``."""
        self._time_ns += timestep_ns


class EngineScript(ScriptLife):
    """Base class of a Python JSON engine's user script.

    Override the hooks :meth:`initialize`, :meth:`runLoop`, :meth:`reset` and :meth:`shutdown`;
    keep the engine's datapacks with :meth:`_registerDataPack`, :meth:`_setDataPack` and
    :meth:`_getDataPack`. Name, config and time: :class:`ScriptLife`.

    Attributes:
        _datapacks: datapack name -> data (``None`` until set).
    """

    _datapacks: dict[str, Any]

    def _new_datapack_store(self) -> None:
        self._datapacks = {}

    # -- datapacks ----------------------------------------------------------------------------

    def _registerDataPack(self, datapack_name: str) -> None:
        """Register a datapack, with value ``None``.

        Raises:
            DataPackRegistrationError: the name is already registered.
        """
        if datapack_name in self._datapacks:
            raise DataPackRegistrationError(
                f"DataPack with specified name ({datapack_name}) already registered"
            )
        self._datapacks[datapack_name] = None

    def _getRegisteredDataPackNames(self) -> list[str]:
        """The names of the registered datapacks, in registration order."""
        return list(self._datapacks)

    def _setDataPack(self, datapack_name: str, data: Any) -> None:
        """Store ``data`` (any JSON-serializable value) for a registered datapack.

        Raises:
            DataPackRegistrationError: the datapack is not registered.
        """
        if datapack_name not in self._datapacks:
            raise DataPackRegistrationError(
                f"Attempting to set data on an unregistered DataPack ({datapack_name})"
            )
        self._datapacks[datapack_name] = data

    def _getDataPack(self, datapack_name: str) -> Any:
        """The stored data itself, not a copy (``None`` if never set).

        Raises:
            DataPackRegistrationError: the datapack is not registered.
        """
        try:
            return self._datapacks[datapack_name]
        except KeyError:
            raise DataPackRegistrationError(
                f"Attempting to get data from an unregistered DataPack ({datapack_name})"
            ) from None
