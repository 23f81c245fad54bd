"""Settings of the Ray executor and what one simulation reserves on the cluster.

Read from the environment by :func:`load_ray_settings` (``RAY_ADDRESS`` and ``NRP_RAY_*``). A
simulation reserves the defaults (``NRP_RAY_NUM_CPUS``, ``NRP_RAY_MEMORY_MB``,
``NRP_RAY_RESOURCES``); its experiment may ask for other values in the ``RayResources`` object of
its ``simulation_config.json`` (:func:`experiment_resources`, checked against
:data:`RAY_RESOURCES_SCHEMA`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hbp_nrp_commons.settings import SettingsError, env_float

RESOURCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
MIB = 1024 * 1024

#: Resource names Ray reserves for itself: an experiment may not set them as custom resources.
RESERVED_NAMES = ("CPU", "GPU", "memory", "object_store_memory", "TPU", "accelerator_type")

#: JSON Schema of ``RayResources`` in ``simulation_config.json`` (``nrp_core`` accepts and ignores it).
#: Amounts go down to 0.01 (Ray counts fractions in steps of 0.0001); GPUs beyond one are whole.
RAY_RESOURCES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "num_cpus": {"type": "number", "minimum": 0.01, "maximum": 1024},
        "num_gpus": {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 1},
                {"type": "integer", "minimum": 1, "maximum": 64},
            ]
        },
        "memory_mb": {"type": "integer", "minimum": 0, "maximum": 4194304},
        "resources": {
            "type": "object",
            "maxProperties": 16,
            "propertyNames": {
                "pattern": RESOURCE_NAME.pattern,
                "not": {"anyOf": [{"enum": list(RESERVED_NAMES)}, {"pattern": "_group_|^node:"}]},
            },
            "additionalProperties": {"type": "number", "minimum": 0.01, "maximum": 1000000},
        },
    },
}


@dataclass(frozen=True)
class Resources:
    """What one simulation reserves: Ray's ``num_cpus``, ``num_gpus``, ``memory`` and custom resources."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_mb: int = 2560
    custom: tuple[tuple[str, float], ...] = ()

    def ray_options(self) -> dict[str, Any]:
        """The resource options of ``ActorClass.options``."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "resources": dict(self.custom)}
        if self.num_gpus:
            options["num_gpus"] = self.num_gpus
        if self.memory_mb:
            options["memory"] = self.memory_mb * MIB
        return options

    def as_ray_totals(self) -> dict[str, float]:
        """The amounts under the names ``ray.available_resources()`` uses (``CPU``, ``GPU``, ``memory``)."""
        totals = {"CPU": self.num_cpus, **dict(self.custom)}
        if self.num_gpus:
            totals["GPU"] = self.num_gpus
        if self.memory_mb:
            totals["memory"] = float(self.memory_mb * MIB)
        return totals

    def describe(self) -> str:
        """E.g. ``CPU 1, memory 2560 MiB, gpu_node 1``."""
        parts = [f"CPU {self.num_cpus:g}"]
        if self.num_gpus:
            parts.append(f"GPU {self.num_gpus:g}")
        if self.memory_mb:
            parts.append(f"memory {self.memory_mb} MiB")
        parts += [f"{name} {amount:g}" for name, amount in self.custom]
        return ", ".join(parts)


@dataclass(frozen=True)
class RaySettings:
    """How the REST server uses a Ray cluster (``NRP_EXECUTOR=ray``).

    Attributes:
        address: ``RAY_ADDRESS``: the cluster to join; ``auto`` (the default) starts a local Ray head.
        namespace: Ray namespace of this REST server's actors (``NRP_RAY_NAMESPACE``); REST servers
            sharing a cluster need different ones (restart reconciliation stops unknown actors in it).
        defaults: what a simulation reserves unless its experiment asks otherwise.
        storage_url: the storage server as the nodes reach it (``NRP_RAY_STORAGE_URL``; empty: the
            REST server's own ``NRP_STORAGE_URL``).
        mqtt_address: the broker as the nodes reach it (``NRP_RAY_MQTT_ADDRESS``; empty: the REST
            server's own broker address).
        placement_timeout: seconds a new simulation may wait for a node (``NRP_RAY_PLACEMENT_TIMEOUT``;
            beyond: 409).
        lease: seconds an actor keeps its simulation running without hearing from the REST server
            (``NRP_RAY_LEASE``); then it stops it and uploads the logs itself.
    """

    address: str = "auto"
    namespace: str = "nrp"
    defaults: Resources = field(default_factory=Resources)
    storage_url: str = ""
    mqtt_address: str = ""
    placement_timeout: float = 10.0
    lease: float = 15.0


def parse_custom(raw: str, name: str) -> tuple[tuple[str, float], ...]:
    """A JSON object of custom resource amounts, e.g. ``{"gpu_node": 1}``.

    Raises:
        SettingsError: not such an object; the message names ``name``.
    """
    if not raw.strip():
        return ()
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f'{name} must be a JSON object such as {{"gpu_node": 1}}: {exc}') from exc
    if not isinstance(value, dict):
        raise SettingsError(f'{name} must be a JSON object such as {{"gpu_node": 1}}, got {raw!r}')
    pairs = []
    for key, amount in sorted(value.items()):
        if not RESOURCE_NAME.match(key) or isinstance(amount, bool) or not isinstance(amount, int | float):
            raise SettingsError(f"{name}: resource {key!r} needs a name of letters, digits, _.- and a number")
        if amount <= 0:
            raise SettingsError(f"{name}: resource {key!r} must be positive, got {amount}")
        if key in RESERVED_NAMES:
            raise SettingsError(
                f"{name}: {key!r} is Ray's own resource; use NRP_RAY_NUM_CPUS or NRP_RAY_MEMORY_MB"
            )
        pairs.append((key, float(amount)))
    return tuple(pairs)


def load_ray_settings(env: Mapping[str, str], default_memory_mb: int) -> RaySettings:
    """Read ``RAY_ADDRESS`` and the ``NRP_RAY_*`` variables.

    Args:
        default_memory_mb: the memory a simulation reserves unless ``NRP_RAY_MEMORY_MB`` says
            otherwise (the sandbox's memory limit, which is what it may use).

    Raises:
        SettingsError: a value is unusable; the message names the variable.
    """
    num_cpus = env_float(env, "NRP_RAY_NUM_CPUS", 1.0, non_negative=True)
    if num_cpus <= 0:
        raise SettingsError(f"NRP_RAY_NUM_CPUS must be positive, got {num_cpus:g}")
    raw_memory = env.get("NRP_RAY_MEMORY_MB", "").strip()
    try:
        memory_mb = int(raw_memory) if raw_memory else default_memory_mb
    except ValueError as exc:
        raise SettingsError(f"NRP_RAY_MEMORY_MB must be a whole number of MiB, got {raw_memory!r}") from exc
    if memory_mb < 0:
        raise SettingsError(f"NRP_RAY_MEMORY_MB must not be negative, got {memory_mb}")
    defaults = Resources(
        num_cpus=num_cpus,
        memory_mb=memory_mb,
        custom=parse_custom(env.get("NRP_RAY_RESOURCES", ""), "NRP_RAY_RESOURCES"),
    )
    namespace = env.get("NRP_RAY_NAMESPACE", "").strip() or "nrp"
    if not RESOURCE_NAME.match(namespace):
        raise SettingsError(f"NRP_RAY_NAMESPACE must be letters, digits and _.-, got {namespace!r}")
    return RaySettings(
        address=env.get("RAY_ADDRESS", "").strip() or "auto",
        namespace=namespace,
        defaults=defaults,
        storage_url=env.get("NRP_RAY_STORAGE_URL", "").strip(),
        mqtt_address=env.get("NRP_RAY_MQTT_ADDRESS", "").strip(),
        placement_timeout=env_float(env, "NRP_RAY_PLACEMENT_TIMEOUT", 10.0, non_negative=True),
        lease=env_float(env, "NRP_RAY_LEASE", 15.0, non_negative=True),
    )


class ResourceRequestError(ValueError):
    """The experiment's ``RayResources`` is not a valid request; the message names the field."""


def experiment_resources(defaults: Resources, config: Mapping[str, Any], config_name: str) -> Resources:
    """What a simulation of this experiment reserves: ``defaults`` with its ``RayResources`` applied.

    ``config`` is the parsed ``simulation_config.json``; its ``RayResources`` is checked against
    :data:`RAY_RESOURCES_SCHEMA`. An experiment may ask for more than the defaults, never less: each
    amount is the larger of the two; custom resources are added to those of ``NRP_RAY_RESOURCES``.

    Raises:
        ResourceRequestError: the request does not follow the schema (the message names the field).
    """
    request = config.get("RayResources")
    if request is None:
        return defaults
    from jsonschema import Draft7Validator

    errors = sorted(
        Draft7Validator(RAY_RESOURCES_SCHEMA).iter_errors(request), key=lambda error: list(error.path)
    )
    if errors:
        error = errors[0]
        where = ".".join(["RayResources", *(str(part) for part in error.path)])
        raise ResourceRequestError(f"{config_name}: {where}: {error.message}")
    custom = dict(defaults.custom)
    for name, amount in request.get("resources", {}).items():
        custom[name] = max(float(amount), custom.get(name, 0.0))
    return Resources(  # more than the defaults, never less: the operator's defaults are a floor
        num_cpus=max(float(request.get("num_cpus", 0.0)), defaults.num_cpus),
        num_gpus=max(float(request.get("num_gpus", 0.0)), defaults.num_gpus),
        memory_mb=max(int(request.get("memory_mb", 0)), defaults.memory_mb),
        custom=tuple(sorted(custom.items())),
    )
