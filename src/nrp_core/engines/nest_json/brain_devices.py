"""nrp-core's ``brain_devices`` for ``nest_json`` brain scripts: create a device and register it.

Usage, as in nrp-core's husky and iCub brains::

    import nest
    from nrp_core.engines.nest_json import brain_devices as bd

    bd.PoissonSpikeGenerator(nest, "lpg", population[0:3:2])   # datapack "lpg": set its "rate"
    bd.LeakyIntegratorAlpha(nest, "actors", population[6:8], n=2, conn_spec="one_to_one")  # read "V_m"

Each helper creates the device (see :mod:`nrp_core.engines.nest_json.devices` for what it is),
connects it and registers it as the datapack ``name`` (:func:`RegisterDataPack`).
"""

from __future__ import annotations

from typing import Any

from nrp_core.engines.nest_json import RegisterDataPack
from nrp_core.engines.nest_json import devices as _devices

__all__ = [
    "DCSource",
    "LeakyIntegrator",
    "LeakyIntegratorAlpha",
    "LeakyIntegratorExp",
    "PoissonSpikeGenerator",
]

# nrp-core's names are kept (N802).


def PoissonSpikeGenerator(
    nest: Any, name: str, neurons: Any, n: int = 1, conn_spec: Any = "all_to_all"
) -> None:  # noqa: N802
    """Poisson input to ``neurons``; datapack property ``rate`` (spikes/s)."""
    RegisterDataPack(name, _devices.create_poisson_generator(nest, neurons, n, conn_spec))


def DCSource(nest: Any, name: str, neurons: Any, n: int = 1, conn_spec: Any = "all_to_all") -> None:  # noqa: N802
    """DC current into ``neurons``; datapack property ``amplitude`` (pA)."""
    RegisterDataPack(name, _devices.create_dc_source(nest, neurons, n, conn_spec))


def LeakyIntegrator(  # noqa: N802
    nest: Any,
    name: str,
    neurons: Any,
    n: int,
    n_type: str,
    leaky_params: dict[str, Any],
    conn_spec: Any,
    delay: Any,
) -> None:
    """Leaky integrator cells of model ``n_type`` reading ``neurons``; datapack property ``V_m`` (mV)."""
    cells = _devices.create_leaky_integrator(nest, neurons, n, n_type, leaky_params, conn_spec, delay)
    RegisterDataPack(name, cells)


def LeakyIntegratorAlpha(
    nest: Any, name: str, neurons: Any, n: int = 1, conn_spec: Any = "all_to_all"
) -> None:  # noqa: N802
    """Leaky integrators with alpha-shaped synaptic currents (``V_m``, mV)."""
    spec = _devices.ALPHA
    LeakyIntegrator(nest, name, neurons, n, spec["model"], spec["params"], conn_spec, spec["delay"])


def LeakyIntegratorExp(nest: Any, name: str, neurons: Any, n: int = 1, conn_spec: Any = "all_to_all") -> None:  # noqa: N802
    """Leaky integrators with exponential synaptic currents and random delays (``V_m``, mV)."""
    spec = _devices.EXP
    LeakyIntegrator(nest, name, neurons, n, spec["model"], spec["params"], conn_spec, spec["delay"])
