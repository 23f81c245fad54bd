"""Transceiver, preprocessing and status functions: decorators, loading and calling.

Experiment files register functions with stacked decorators; the function-type decorator
(:class:`TransceiverFunction`, :class:`PreprocessingFunction`, :class:`StatusFunction`) is the
innermost one and turns the plain function into a :class:`Function`; the input decorators above it
(:class:`EngineDataPack`, :class:`PreprocessedDataPack`, :class:`EngineDataPacks`,
:class:`SimulationTime`, :class:`SimulationIteration`) declare its keyword arguments::

    @EngineDataPack(keyword="datapack_python", id=DataPackIdentifier("datapack1", "python_1"))
    @TransceiverFunction("python_2")
    def transceiver_function(datapack_python):
        ...

:func:`load_functions` executes all function files of a configuration in one shared global
namespace (globals defined by one file are visible to the others, as in nrp-core) and returns a
:class:`FunctionSet`; the loop calls its functions through :meth:`Function.bind`.
"""

from __future__ import annotations

import builtins
import copy
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nrp_core.datapacks import DataPackIdentifier, DataPackInterface
from nrp_core.errors import FunctionError, FunctionLoadError, user_location

__all__ = [
    "EngineDataPack",
    "EngineDataPacks",
    "Function",
    "FunctionError",
    "FunctionLoadError",
    "FunctionSet",
    "PreprocessedDataPack",
    "PreprocessingFunction",
    "SimulationIteration",
    "SimulationTime",
    "StatusFunction",
    "TransceiverFunction",
    "load_functions",
]

TRANSCEIVER = "TransceiverFunction"
PREPROCESSING = "PreprocessingFunction"
STATUS = "StatusFunction"

Key = tuple[str, str]
Pool = dict[Key, DataPackInterface]


# --------------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class _Input:
    """One keyword argument of a function: where its value comes from."""

    keyword: str
    kind: str  # "engine", "local", "engine_many", "local_many", "time", "iteration"
    keys: tuple[Key, ...] = ()
    type: str = ""


@dataclass
class _Context:
    """Loop values (simulation time, iteration) that functions read; set before each datapack cycle."""

    time_ns: int = 0
    iteration: int = 0


# --------------------------------------------------------------------------------------------------
# Registration while files are loaded

_registry = threading.local()


def _register(function: Function) -> None:
    registered = getattr(_registry, "functions", None)
    if registered is not None:
        registered.append(function)


@dataclass(eq=False)
class Function:
    """A registered function: the user's callable, its kind, its linked engine and its inputs.

    Calling the object calls the user's function with the same keyword arguments, so experiment
    files and tests may still call it directly.
    """

    kind: str
    engine_name: str | None
    fn: Callable[..., Any]
    inputs: list[_Input] = field(default_factory=list)
    name: str = ""
    file: str = ""

    def __post_init__(self) -> None:
        self._direct: tuple[tuple[str, Key], ...] | None = ()
        self.__wrapped__ = self.fn
        self.__name__ = getattr(self.fn, "__name__", "function")
        if not self.file:
            code = getattr(self.fn, "__code__", None)
            self.file = code.co_filename if code is not None else ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def _add_input(self, spec: _Input) -> Function:
        if any(existing.keyword == spec.keyword for existing in self.inputs):
            raise ValueError(f"keyword '{spec.keyword}' is declared twice for function {self.__name__}")
        self.inputs.append(spec)
        if self._direct is not None and spec.kind == "engine":
            self._direct = (*self._direct, (spec.keyword, spec.keys[0]))
        else:
            self._direct = None
        return self

    def requested_keys(self) -> list[tuple[Key, str]]:
        """The ``((name, engine), type)`` pairs this function asks engines for after their step."""
        out: list[tuple[Key, str]] = []
        for spec in self.inputs:
            if spec.kind in ("engine", "engine_many"):
                out.extend((key, spec.type) for key in spec.keys)
        return out

    @property
    def line(self) -> int:
        code = getattr(self.fn, "__code__", None)
        return code.co_firstlineno if code is not None else 0


class _FunctionTypeDecorator:
    kind = ""

    def __init__(self, engine_name: str | None) -> None:
        self._engine_name = engine_name

    def __call__(self, fn: Callable[..., Any]) -> Function:
        if isinstance(fn, Function):
            raise TypeError(
                f"{self.kind} must be the innermost decorator (directly above 'def'), "
                f"found another function decorator below it on {fn.__name__}"
            )
        if not callable(fn):
            raise TypeError(f"{self.kind} decorates a function, got {type(fn).__name__}")
        function = Function(self.kind, self._engine_name, fn)
        _register(function)
        return function


class TransceiverFunction(_FunctionTypeDecorator):
    """Register a transceiver function linked to ``engineName``.

    It runs whenever that engine is synchronized and returns a ``list`` of datapacks that are sent
    to their engines (usually ``engineName``) before their next step.
    """

    kind = TRANSCEIVER

    def __init__(self, engineName: str) -> None:
        super().__init__(engineName)


class PreprocessingFunction(_FunctionTypeDecorator):
    """Register a preprocessing function linked to ``engineName``.

    Like a transceiver function, but its inputs must come from ``engineName`` and its outputs (also
    of ``engineName``) stay in the preprocessing pool, where transceiver and status functions read
    them with :class:`PreprocessedDataPack`.
    """

    kind = PREPROCESSING

    def __init__(self, engineName: str) -> None:
        super().__init__(engineName)


class StatusFunction(_FunctionTypeDecorator):
    """Register the status function: runs once per batch and returns ``(done, observations)``."""

    kind = STATUS

    def __init__(self) -> None:
        super().__init__(None)


class _InputDecorator:
    _spec: _Input

    def __call__(self, function: Function) -> Function:
        if not isinstance(function, Function):
            raise TypeError(
                f"{type(self).__name__} must be placed above a TransceiverFunction, PreprocessingFunction "
                "or StatusFunction decorator"
            )
        return function._add_input(self._spec)


def _key_of(identifier: DataPackIdentifier) -> Key:
    if not isinstance(identifier, DataPackIdentifier):
        raise TypeError(f"expected a DataPackIdentifier, got {type(identifier).__name__}")
    return (identifier.name, identifier.engine_name)


class EngineDataPack(_InputDecorator):
    """Pass the datapack ``id`` as ``keyword``; it is requested from its engine.

    With ``isPreprocessed=True`` it is taken from the local pools instead, like
    :class:`PreprocessedDataPack`.
    """

    def __init__(self, keyword: str, id: DataPackIdentifier, isPreprocessed: bool = False) -> None:
        kind = "local" if isPreprocessed else "engine"
        self._spec = _Input(keyword, kind, (_key_of(id),), id.type)


class PreprocessedDataPack(_InputDecorator):
    """Pass the datapack ``id`` from the local pools (preprocessing or transceiver outputs)."""

    def __init__(self, keyword: str, id: DataPackIdentifier) -> None:
        self._spec = _Input(keyword, "local", (_key_of(id),), id.type)


class EngineDataPacks(_InputDecorator):
    """Pass a dict ``name -> datapack`` for ``datapackNames``, all belonging to ``engineName``."""

    def __init__(
        self, keyword: str, datapackNames: Sequence[str], engineName: str, isPreprocessed: bool = False
    ) -> None:
        if isinstance(datapackNames, str):
            raise TypeError("datapackNames must be a list of datapack names, not a string")
        keys = tuple((name, engineName) for name in datapackNames)
        self._spec = _Input(keyword, "local_many" if isPreprocessed else "engine_many", keys)


class SimulationTime(_InputDecorator):
    """Pass the current simulation time (int nanoseconds) as ``keyword``."""

    def __init__(self, keyword: str) -> None:
        self._spec = _Input(keyword, "time")


class SimulationIteration(_InputDecorator):
    """Pass the batch counter (0 in the first batch, never reset) as ``keyword``."""

    def __init__(self, keyword: str) -> None:
        self._spec = _Input(keyword, "iteration")


# --------------------------------------------------------------------------------------------------
# The loaded set


class FunctionSet:
    """All active functions of an experiment, in load order, plus the shared call context."""

    def __init__(self, functions: list[Function], by_value: bool = False, namespace: dict | None = None):
        self.functions = functions
        self.by_value = by_value
        self.namespace = namespace if namespace is not None else {}
        self.context = _Context()
        # The directory load_functions() put on sys.path (None if it was there already).
        self.added_path: str | None = None
        self.preprocessing = [f for f in functions if f.kind == PREPROCESSING]
        self.transceivers = [f for f in functions if f.kind == TRANSCEIVER]
        status = [f for f in functions if f.kind == STATUS]
        self.status: Function | None = status[0] if status else None
        self._by_engine: dict[str, tuple[list[Function], list[Function]]] = {}
        for function in functions:
            if function.kind != STATUS:
                pfs, tfs = self._by_engine.setdefault(function.engine_name or "", ([], []))
                (pfs if function.kind == PREPROCESSING else tfs).append(function)

    def for_engine(self, engine_name: str) -> tuple[list[Function], list[Function]]:
        """``(preprocessing functions, transceiver functions)`` linked to ``engine_name``, load order."""
        return self._by_engine.get(engine_name, ([], []))

    def requested(self) -> dict[str, dict[str, str]]:
        """Per engine, ``{datapack name: type}`` of every datapack requested from engines."""
        out: dict[str, dict[str, str]] = {}
        for function in self.functions:
            for (name, engine), type_ in function.requested_keys():
                types = out.setdefault(engine, {})
                if not types.get(name):
                    types[name] = type_
        return out

    # -- calling -----------------------------------------------------------------------------------

    def _lookup(self, function: Function, key: Key, pools: Sequence[Pool]) -> DataPackInterface:
        for pool in pools:
            datapack = pool.get(key)
            if datapack is not None:
                if self.by_value:
                    return copy.deepcopy(datapack)
                return datapack
        raise FunctionError(
            function.name,
            function.file,
            function.line,
            f"Couldn't find datapack with ID name '{key[0]}' and engine '{key[1]}' "
            f"requested by {function.kind} '{function.name}'",
        )

    def _arguments(
        self, function: Function, engine_pools: Sequence[Pool], local_pools: Sequence[Pool]
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        everywhere = (*engine_pools, *local_pools)
        local_first = (*local_pools, *engine_pools)
        for spec in function.inputs:
            kind = spec.kind
            if kind == "engine":
                kwargs[spec.keyword] = self._lookup(function, spec.keys[0], everywhere)
            elif kind == "local":
                kwargs[spec.keyword] = self._lookup(function, spec.keys[0], local_first)
            elif kind == "engine_many" or kind == "local_many":
                pools = everywhere if kind == "engine_many" else local_first
                kwargs[spec.keyword] = {key[0]: self._lookup(function, key, pools) for key in spec.keys}
            elif kind == "time":
                kwargs[spec.keyword] = self.context.time_ns
            else:
                kwargs[spec.keyword] = self.context.iteration
        return kwargs

    def _raised(self, function: Function, exc: Exception) -> FunctionError:
        file, line = user_location(exc)
        return FunctionError(
            function.name,
            file or function.file,
            line or function.line,
            f"{type(exc).__name__}: {exc}",
            "".join(traceback.format_exception(exc)),
        )

    def _invoke(self, function: Function, kwargs: dict[str, Any]) -> Any:
        try:
            return function.fn(**kwargs)
        except Exception as exc:
            raise self._raised(function, exc) from exc

    def _check_list(self, function: Function, result: Any) -> list[DataPackInterface]:
        if type(result) is not list:
            raise FunctionError(
                function.name,
                function.file,
                function.line,
                f"{function.kind} '{function.name}' returned {type(result).__name__}: "
                "transceiver and preprocessing functions must return a list of DataPacks",
            )
        for item in result:
            if not isinstance(item, DataPackInterface) or not item.engine_name:
                raise FunctionError(
                    function.name,
                    function.file,
                    function.line,
                    f"{function.kind} '{function.name}' returned a list containing "
                    f"{type(item).__name__}: transceiver and preprocessing functions must return a list "
                    "of DataPacks with a name and an engine",
                )
            if function.kind == PREPROCESSING and item.engine_name != function.engine_name:
                raise FunctionError(
                    function.name,
                    function.file,
                    function.line,
                    f"preprocessing function '{function.name}' returned datapack '{item.name}' of engine "
                    f"'{item.engine_name}': its outputs must belong to its engine '{function.engine_name}'",
                )
        return result

    def run_datapack_function(
        self, function: Function, engine_pools: Sequence[Pool], local_pools: Sequence[Pool]
    ) -> list[DataPackInterface]:
        """Call a TF or PF on the given pools and return its checked output list."""
        kwargs = None
        direct = function._direct
        if direct is not None and not self.by_value:
            # Fast path: every input is an engine datapack present in the engine pool.
            pool = engine_pools[0]
            try:
                kwargs = {keyword: pool[key] for keyword, key in direct}
            except KeyError:
                kwargs = None
        if kwargs is None:
            if function.kind == PREPROCESSING:
                local_pools = ()
            kwargs = self._arguments(function, engine_pools, local_pools)
        try:
            result = function.fn(**kwargs)
        except Exception as exc:
            raise self._raised(function, exc) from exc
        if type(result) is list:
            for item in result:
                if not isinstance(item, DataPackInterface) or (
                    function.kind == PREPROCESSING and item.engine_name != function.engine_name
                ):
                    break
            else:
                return result
        return self._check_list(function, result)

    def run_status(self, engine_pools: Sequence[Pool], local_pools: Sequence[Pool]) -> tuple[bool, list[Any]]:
        """Call the status function; returns ``(done, observations)``."""
        function = self.status
        assert function is not None
        result = self._invoke(function, self._arguments(function, engine_pools, local_pools))
        try:
            done, observations = result
            observations = list(observations) if observations is not None else []
        except (TypeError, ValueError):
            raise FunctionError(
                function.name,
                function.file,
                function.line,
                f"status function '{function.name}' returned {type(result).__name__}: "
                "it must return a 2-element sequence (done flag, list of datapacks or raw data)",
            ) from None
        return bool(done), observations


# --------------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class FunctionEntry:
    """A ``DataPackProcessingFunctions`` / ``StatusFunction`` config entry."""

    name: str
    file_name: str
    is_active: bool = True


def _entries(config: Mapping[str, Any]) -> tuple[list[FunctionEntry], FunctionEntry | None]:
    def entry(doc: Mapping[str, Any]) -> FunctionEntry:
        return FunctionEntry(str(doc["Name"]), str(doc["FileName"]), bool(doc.get("IsActive", True)))

    datapack_functions = [entry(doc) for doc in config.get("DataPackProcessingFunctions") or []]
    status_doc = config.get("StatusFunction")
    return datapack_functions, entry(status_doc) if status_doc else None


def passes_by_value(config: Mapping[str, Any]) -> bool:
    """True when ``FunctionArgumentsPassingMethod`` or ``DataPackPassingPolicy`` is ``"value"``."""
    return "value" in (config.get("FunctionArgumentsPassingMethod"), config.get("DataPackPassingPolicy"))


def _exec_file(path: Path, namespace: dict[str, Any]) -> list[Function]:
    try:
        source = path.read_text()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise FunctionLoadError(f"cannot read function file '{path.name}': {reason}") from exc
    _registry.functions = []
    namespace["__file__"] = str(path)
    try:
        code = compile(source, str(path), "exec")
        exec(code, namespace)
    except Exception as exc:
        file, line = user_location(exc)
        tb = "".join(traceback.format_exception(exc))
        raise FunctionLoadError(
            f"error while loading function file '{path.name}' ({Path(file or path).name}:{line}): "
            f"{type(exc).__name__}: {exc}\n{tb.rstrip()}"
        ) from exc
    finally:
        registered = _registry.functions
        _registry.functions = None
    return registered


def load_functions(config: Mapping[str, Any], experiment_dir: str | Path) -> FunctionSet:
    """Load the active TF/PF files, then the status function file, into one shared namespace.

    Args:
        config: the (defaulted) simulation configuration.
        experiment_dir: the directory function ``FileName`` values are relative to; it is put on
            ``sys.path`` so function files can import helper modules lying beside them.

    Returns:
        the :class:`FunctionSet` of the active functions in load order.

    Raises:
        FunctionLoadError: missing file, error at load time, no or several functions registered by
            one file, duplicate ``Name``, a status function registered from a TF entry or vice versa.
    """
    experiment_dir = Path(experiment_dir).resolve()
    datapack_entries, status_entry = _entries(config)
    namespace: dict[str, Any] = {"__name__": "__nrp_functions__", "__builtins__": builtins}
    added_path = None
    if str(experiment_dir) not in sys.path:
        sys.path.insert(0, str(experiment_dir))
        added_path = str(experiment_dir)
    names: set[str] = set()
    loaded: list[Function] = []
    plan = [(entry, False) for entry in datapack_entries]
    if status_entry is not None:
        plan.append((status_entry, True))
    for entry, is_status in plan:
        if not entry.is_active:
            continue
        if entry.name in names:
            raise FunctionLoadError(f"function name '{entry.name}' is used twice")
        names.add(entry.name)
        path = experiment_dir / entry.file_name
        if not path.is_file():
            raise FunctionLoadError(f"function file '{entry.file_name}' of '{entry.name}' does not exist")
        registered = _exec_file(path, namespace)
        if len(registered) != 1:
            raise FunctionLoadError(
                f"function file '{entry.file_name}' must register exactly one function, "
                f"it registered {len(registered)}"
            )
        function = registered[0]
        if is_status != (function.kind == STATUS):
            where = "StatusFunction" if is_status else "DataPackProcessingFunctions"
            raise FunctionLoadError(
                f"'{entry.file_name}' registers a {function.kind} but is listed under {where}"
            )
        function.name = entry.name
        function.file = str(path)
        for spec in function.inputs:
            if function.kind == PREPROCESSING and spec.kind in ("engine", "engine_many"):
                for key in spec.keys:
                    if key[1] != function.engine_name:
                        raise FunctionLoadError(
                            f"preprocessing function '{entry.name}' requests datapack '{key[0]}' of engine "
                            f"'{key[1]}': its inputs must belong to its engine '{function.engine_name}'"
                        )
        loaded.append(function)
    functions = FunctionSet(loaded, by_value=passes_by_value(config), namespace=namespace)
    functions.added_path = added_path
    return functions
