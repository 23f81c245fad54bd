"""Loading, overriding (``-o KEY=VALUE``) and validating ``simulation_config.json``.

The pipeline of :func:`load_simulation_config`: resolve the experiment directory and the config file
(never changing the working directory), parse the JSON, apply ``-o`` overrides, validate against our
JSON Schema files in ``nrp_core/schemas`` while filling in their defaults, check what a schema cannot
(engine types, unique names, function files), and warn once about every unknown key.

Engine-type validation and defaults (:func:`complete_engine_config`) run again when the runtime
creates an engine, so that an engine script receives the fully defaulted config plus ``TimeRatio``.
"""

from __future__ import annotations

import copy
import errno
import json
import logging
import struct
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator, ValidationError, validators
from jsonschema.protocols import Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7

from nrp_core.errors import ConfigError

__all__ = [
    "ConfigError",
    "ENGINE_PROC_CMDS",
    "METADATA_KEYS",
    "TIME_RATIO",
    "apply_overrides",
    "complete_engine_config",
    "load_simulation_config",
    "resolve_experiment_paths",
    "timeout_to_ns",
    "timestep_to_ns",
    "validate_engine_config",
]

logger = logging.getLogger(__name__)

SCHEMA_DIR = Path(__file__).parent / "schemas"
_SCHEMA_URN = "urn:nrp-core:schema:"

ENGINE_PROC_CMDS: dict[str, str] = {
    "python_json": "python_json_engine.py",
    "py_sim": "python_json_engine.py",
    "nest_json": "nest_json_engine.py",
    "nest_server": "nest-server",
    "python_grpc": "python_grpc_engine.py",
    "datatransfer_grpc_engine": "datatransfer_grpc_engine.py",
}
"""The engine types we know, each with its default ``EngineProcCmd``; each has a schema file."""

TIME_RATIO = [1, 1000000000]
"""Added to every engine config: engine times are integer nanoseconds."""

METADATA_KEYS = frozenset(
    {
        "SimulationName",
        "SimulationDescription",
        "SimDescription",
        "SimulationTimestep",
        "cloneDate",
        "EventLoopTimeout",
        "EventLoopTimestep",
        "StartROSNode",
        "ConnectMQTT",
        "ConnectROS",
        "thumbnail",
        "maturity",
        "experimentId",
        "path",
        "configFile",
    }
)
"""Keys of storage listings and frontends that pass through without an unknown-key warning."""

_DEFAULT_LISTS = ("EngineConfigs", "ExternalProcesses", "DataPackProcessingFunctions", "ComputationalGraph")


# -- time conversions -----------------------------------------------------------------------------

_FLOAT32 = struct.Struct("f")


def _float32(value: float) -> float:
    return _FLOAT32.unpack(_FLOAT32.pack(value))[0]


_NS_PER_S_F32 = _float32(1e9)


def timestep_to_ns(seconds: float) -> int:
    """Convert an engine timestep in seconds to int nanoseconds as nrp-core does.

    The product is computed in float32 (``duration_cast<nanoseconds>(duration<float>(s))``) and
    truncated toward zero, so 0.01, 0.02 and 0.04 s give exactly 10, 20 and 40 ms. The product of
    two float32 values is exact in double precision, so one final rounding to float32 reproduces
    the float32 multiplication.
    """
    return int(_float32(_float32(float(seconds)) * _NS_PER_S_F32))


def timeout_to_ns(seconds: float) -> int:
    """Convert ``SimulationTimeout`` in seconds to int nanoseconds, in double precision."""
    return round(seconds * 1e9)


# -- schemas ----------------------------------------------------------------------------------------


@cache
def _registry() -> Registry:
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        # jsonschema picks the validator class of a subschema from its "$schema"; without it,
        # subschemas keep our defaults-filling Draft 7 class.
        schema.pop("$schema", None)
        resources.append((schema["$id"], DRAFT7.create_resource(schema)))
    return Registry().with_resources(resources)


def _schema(name: str) -> dict:
    return _registry().contents(_SCHEMA_URN + name)


def _fill_defaults(validator_class: type[Validator]) -> type[Validator]:
    """Extend a validator class so that validating also inserts every missing ``default``."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def properties_with_defaults(
        validator: Validator, properties: dict[str, Any], instance: Any, schema: dict[str, Any]
    ) -> Iterator[ValidationError]:
        if validator.is_type(instance, "object"):
            for key, subschema in properties.items():
                if key not in instance and isinstance(subschema, dict) and "default" in subschema:
                    instance[key] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": properties_with_defaults})


_DefaultingValidator = _fill_defaults(Draft7Validator)


def _validate(instance: Any, schema_name: str, path: str = "$") -> list[str]:
    """Validate ``instance`` in place (defaults filled in); return one message per problem."""
    validator = _DefaultingValidator(_schema(schema_name), registry=_registry())
    problems = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
        location = path + error.json_path[1:]
        problems.append(f"{location}: {error.message}")
    return problems


# -- overrides --------------------------------------------------------------------------------------


def _parse_override_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _array_index(array: list, part: str, override: str) -> int:
    if part.isdigit():
        index = int(part)
        if index < len(array):
            return index
        raise ConfigError(f"override '{override}': index {index} out of range (array of {len(array)})")
    field, sep, wanted = part.partition(":")
    if sep:
        for index, element in enumerate(array):
            if not isinstance(element, dict) or field not in element:
                continue
            value = element[field]
            if value == wanted or (not isinstance(value, str) and json.dumps(value) == wanted):
                return index
        raise ConfigError(f"override '{override}': no array element with {field} equal to '{wanted}'")
    raise ConfigError(f"override '{override}': '{part}' is neither an array index nor Field:Value")


def _apply_override(doc: dict, override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{override}' is not of the form KEY=VALUE")
    value = _parse_override_value(text)
    parts = key.split(".")
    node: Any = doc
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, dict):
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                node = child
        elif isinstance(node, list):
            index = _array_index(node, part, override)
            if last:
                node[index] = value
            else:
                node = node[index]
        else:
            parent = ".".join(parts[:depth])
            raise ConfigError(f"override '{override}': '{parent}' is not an object or an array")


def apply_overrides(doc: dict, overrides: Sequence[str]) -> dict:
    """Apply ``-o KEY=VALUE`` overrides in order and return the overridden copy of ``doc``.

    Each override may hold several comma-separated ``KEY=VALUE`` items. ``KEY`` is a dotted path:
    at an object level the part is a key (missing keys, and missing intermediate levels, are
    created); at an array level it is an integer index or ``Field:Value`` (the first element whose
    ``Field`` equals ``Value``). ``VALUE`` is parsed as JSON, or taken as a plain string if it is
    not valid JSON.

    Args:
        doc: the parsed configuration; not modified.
        overrides: the override options, in command-line order.

    Returns:
        A new document with the overrides applied.

    Raises:
        ConfigError: an item is not ``KEY=VALUE``, an index is out of range, no element matches
            ``Field:Value``, or the path crosses a scalar.
    """
    result = copy.deepcopy(doc)
    for option in overrides:
        for item in option.split(","):
            item = item.strip()
            if item:
                _apply_override(result, item)
    return result


# -- unknown keys -----------------------------------------------------------------------------------


def _resolved(schema: dict) -> dict:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = _registry().contents(schema["$ref"])
    return schema


def _schema_parts(schema: dict) -> Iterator[dict]:
    schema = _resolved(schema)
    if not isinstance(schema, dict):
        return
    yield schema
    for sub in schema.get("allOf", ()):
        yield from _schema_parts(sub)
    for key in ("then", "else"):
        if key in schema:
            yield from _schema_parts(schema[key])


def _known_properties(schema: dict) -> dict[str, dict]:
    known: dict[str, dict] = {}
    for part in _schema_parts(schema):
        for key, subschema in part.get("properties", {}).items():
            known.setdefault(key, subschema)
    return known


def _items_schema(schema: dict) -> dict | None:
    for part in _schema_parts(schema):
        if isinstance(part.get("items"), dict):
            return part["items"]
    return None


def _warn_unknown_keys(instance: Any, schema: dict, path: str) -> None:
    if isinstance(instance, dict):
        known = _known_properties(schema)
        if not known:  # a free-form object such as EngineExtraConfigs
            return
        lowered = {key.lower(): key for key in known}
        for key, value in instance.items():
            child = f"{path}.{key}"
            if key in known:
                _warn_unknown_keys(value, known[key], child)
            elif key in METADATA_KEYS:
                continue
            elif key.lower() in lowered:
                logger.warning(
                    "Unknown configuration key '%s' at %s: did you mean '%s'? Passed through unchanged",
                    key,
                    child,
                    lowered[key.lower()],
                )
            else:
                logger.warning("Unknown configuration key '%s' at %s: passed through unchanged", key, child)
    elif isinstance(instance, list):
        items = _items_schema(schema)
        if items is not None:
            for index, element in enumerate(instance):
                _warn_unknown_keys(element, items, f"{path}[{index}]")


def _warn_unknown_config_keys(doc: dict) -> None:
    top = _schema("simulation")
    _warn_unknown_keys({k: v for k, v in doc.items() if k != "EngineConfigs"}, top, "$")
    for index, engine in enumerate(doc.get("EngineConfigs", [])):
        engine_type = engine.get("EngineType") if isinstance(engine, dict) else None
        schema_name = engine_type if engine_type in ENGINE_PROC_CMDS else "engine_base"
        _warn_unknown_keys(engine, _schema(schema_name), f"$.EngineConfigs[{index}]")


# -- engines ----------------------------------------------------------------------------------------


UNREACHABLE_ENGINE_TYPES: dict[str, str] = {
    "gazebo_grpc": "Gazebo",
    "gazebo_json": "Gazebo",
    "edlut_grpc_engine": "EDLUT",
}
"""nrp-core engine types whose simulator this runtime cannot run (no Python package for it)."""


def _unknown_engine_type(engine_type: Any, path: str) -> str:
    needs = UNREACHABLE_ENGINE_TYPES.get(str(engine_type))
    if needs is not None:
        return (
            f"{path}: Failed to find engine interface for EngineType '{engine_type}': not supported, it "
            f"needs {needs}, which this runtime cannot run (see docs/simulators.md)"
        )
    known = ", ".join(sorted(ENGINE_PROC_CMDS))
    return (
        f"{path}: Failed to find engine interface for EngineType {engine_type!r}: this engine type is "
        f"not supported (known types: {known})"
    )


def validate_engine_config(engine: dict, path: str = "$") -> list[str]:
    """Validate ``engine`` in place against its engine-type schema, filling in the type defaults.

    Returns:
        One message per problem (empty when valid), each starting with its JSON path.
    """
    engine_type = engine.get("EngineType")
    if engine_type not in ENGINE_PROC_CMDS:
        return [_unknown_engine_type(engine_type, path)]
    return _validate(engine, engine_type, path)


def complete_engine_config(engine: dict, path: str = "$") -> dict:
    """The fully defaulted engine config an engine receives at initialize.

    Validates against the engine-type schema (adding type defaults such as ``ServerAddress``),
    defaults ``EngineProcStartParams`` and ``EngineEnvParams`` to ``[]``, ``EngineExtraConfigs``
    to ``{}``, ``EngineProcCmd`` to the type's command, and sets ``TimeRatio`` to
    ``[1, 1000000000]``.

    Args:
        engine: one ``EngineConfigs`` entry; not modified.
        path: the JSON path of the entry, used in error messages.

    Returns:
        A new, completed engine config.

    Raises:
        ConfigError: unknown ``EngineType`` (``Failed to find engine interface``) or an invalid entry.
    """
    if not isinstance(engine, dict):
        raise ConfigError(f"{path}: an engine config must be an object")
    completed = copy.deepcopy(engine)
    problems = validate_engine_config(completed, path)
    if problems:
        raise ConfigError(problems)
    completed.setdefault("EngineProcStartParams", [])
    completed.setdefault("EngineEnvParams", [])
    completed.setdefault("EngineExtraConfigs", {})
    completed.setdefault("EngineProcCmd", ENGINE_PROC_CMDS[completed["EngineType"]])
    completed["TimeRatio"] = list(TIME_RATIO)
    return completed


# -- whole configuration ----------------------------------------------------------------------------


def resolve_experiment_paths(
    config_file: str | Path, experiment_dir: str | Path | None = None
) -> tuple[Path, Path]:
    """Resolve the config file and the experiment directory.

    With ``experiment_dir``, it must be a directory and a relative ``config_file`` is relative to
    it. Without it, the experiment directory is the directory part of ``config_file`` if it has
    one, else the current directory. The working directory is never changed.

    Returns:
        ``(config_path, experiment_dir)``, both absolute.

    Raises:
        NotADirectoryError: ``experiment_dir`` is given but is not a directory.
        FileNotFoundError: the config file does not exist or is not a regular file.
    """
    config = Path(config_file)
    if experiment_dir not in (None, ""):
        directory = Path(experiment_dir)
        if not directory.is_dir():
            raise NotADirectoryError(f"The provided experiment directory path {directory} is not a directory")
        directory = directory.resolve()
        config_path = config if config.is_absolute() else directory / config
    else:
        directory = config.parent.resolve()
        config_path = directory / config.name
    if not str(config_file) or not config_path.is_file():
        raise FileNotFoundError(errno.ENOENT, "Simulation configuration file not found", str(config_path))
    return config_path, directory


def _duplicate_name(seen: dict[str, str], path: str, entry: dict, key: str, kind: str) -> list[str]:
    """The problem of an entry whose ``key`` repeats a name in ``seen`` (name -> path); else record it."""
    name = entry.get(key)
    if not isinstance(name, str):
        return []
    if name in seen:
        return [
            f"{path}.{key}: duplicate {kind} name {name!r} (also {seen[name]}); {kind} names must be unique"
        ]
    seen[name] = path
    return []


def _check_names_and_files(doc: dict, experiment_dir: Path) -> list[str]:
    problems = []
    seen_engines: dict[str, str] = {}
    for index, engine in enumerate(doc.get("EngineConfigs", [])):
        if not isinstance(engine, dict):
            continue
        path = f"$.EngineConfigs[{index}]"
        problems.extend(_duplicate_name(seen_engines, path, engine, "EngineName", "engine"))
        problems.extend(validate_engine_config(copy.deepcopy(engine), path))

    functions: list[tuple[str, Any]] = [
        (f"$.DataPackProcessingFunctions[{i}]", f)
        for i, f in enumerate(doc.get("DataPackProcessingFunctions", []))
    ]
    if "StatusFunction" in doc:
        functions.append(("$.StatusFunction", doc["StatusFunction"]))
    seen_functions: dict[str, str] = {}
    for path, function in functions:
        if not isinstance(function, dict):
            continue
        problems.extend(_duplicate_name(seen_functions, path, function, "Name", "function"))
        file_name = function.get("FileName")
        if function.get("IsActive", True) and isinstance(file_name, str) and file_name:
            if not (experiment_dir / file_name).is_file():
                problems.append(
                    f"{path}.FileName: function file {file_name!r} not found in the experiment directory"
                )
    return problems


def _read_json(config_path: Path) -> Any:
    text = config_path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", config_path
        ) from None


def load_simulation_config(
    config_file: str | Path,
    experiment_dir: str | Path | None = None,
    overrides: Sequence[str] | Iterable[str] = (),
) -> tuple[dict, Path]:
    """Load, override, validate and default an experiment configuration.

    Engine entries get the base engine defaults (``EngineTimestep``, ``EngineLaunchCommand``, ...)
    here; their engine-type defaults come from :func:`complete_engine_config` when the runtime
    creates the engine. Each entry is nevertheless checked against its type schema here, so that
    every problem is reported at once.

    Args:
        config_file: the config file, absolute or relative to ``experiment_dir``.
        experiment_dir: the experiment directory; default: the directory part of ``config_file``,
            else the current directory.
        overrides: ``-o`` overrides (:func:`apply_overrides`).

    Returns:
        ``(config, experiment_dir)``: the defaulted config and the absolute experiment directory.

    Raises:
        FileNotFoundError: the config file does not exist.
        NotADirectoryError: ``experiment_dir`` is not a directory.
        ConfigError: invalid JSON, a bad override, or every validation problem found.
    """
    config_path, directory = resolve_experiment_paths(config_file, experiment_dir)
    doc = _read_json(config_path)
    if not isinstance(doc, dict):
        raise ConfigError("$: the configuration must be a JSON object", config_path)
    try:
        doc = apply_overrides(doc, list(overrides))
    except ConfigError as exc:
        raise ConfigError(exc.problems, config_path) from None
    problems = _validate(doc, "simulation")
    # Type schemas include the base schema: skip the base problems reported twice.
    problems.extend(p for p in _check_names_and_files(doc, directory) if p not in problems)
    if problems:
        raise ConfigError(problems, config_path)
    for key in _DEFAULT_LISTS:
        doc.setdefault(key, [])
    _warn_unknown_config_keys(doc)
    return doc, directory
