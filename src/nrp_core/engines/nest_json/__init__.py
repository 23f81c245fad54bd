"""``nest_json`` engines: NEST in an engine process, devices exposed as JSON datapacks.

A brain script (``NestInitFileName``) builds the network with ``nest`` and names the node
collections the loop may read or write::

    import nest
    from nrp_core.engines.nest_json import CreateDataPack, RegisterDataPack

    rates = CreateDataPack("rates", "poisson_generator", 2)    # nest.Create + register
    recorder = nest.Create("spike_recorder")
    RegisterDataPack("spikes", recorder)

The engine server (:mod:`nrp_core.engines.nest_json.server`) runs the script, reads registered
datapacks as ``nest.GetStatus`` lists and applies incoming ones with ``nest.SetStatus``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CreateDataPack", "GetDevMap", "RegisterDataPack"]

# name -> NodeCollection, filled by the brain script of the engine running in this process.
_devices: dict[str, Any] = {}


def CreateDataPack(name: str, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 - nrp-core's name
    """Create nodes with ``nest.Create(*args, **kwargs)`` and register them under ``name``.

    Returns:
        The created node collection.
    """
    import nest

    nodes = nest.Create(*args, **kwargs)
    RegisterDataPack(name, nodes)
    return nodes


def RegisterDataPack(name: str, node_collection: Any) -> None:  # noqa: N802 - nrp-core's name
    """Register an existing node collection as the datapack ``name``.

    Raises:
        ValueError: ``name`` is already registered or is the reserved ``kernel``.
    """
    if name == "kernel":
        raise ValueError("DataPack name 'kernel' is reserved for the NEST kernel status")
    if name in _devices:
        raise ValueError(f"DataPack with specified name ({name}) already registered")
    _devices[name] = node_collection


def GetDevMap() -> dict[str, Any]:  # noqa: N802 - nrp-core's name
    """The registered ``name -> node collection`` mapping (the live dict)."""
    return _devices
