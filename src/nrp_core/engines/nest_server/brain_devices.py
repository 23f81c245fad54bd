"""nrp-core's ``brain_devices`` for ``nest_server`` brains: the helpers return the device.

The brain names the devices in its ``populations`` dict (nrp-core's ``nest_server`` convention)::

    bd = nrp_core.engines.nest_server.brain_devices   # NEST Server strips import lines
    lpg = bd.PoissonSpikeGenerator(nest, population[0:3:2])
    populations = {"lpg": lpg, ...}

The devices are the ``nest_json`` ones (:mod:`nrp_core.engines.nest_json.devices`).
"""

from __future__ import annotations

from typing import Any

from nrp_core.engines.nest_json import devices as _devices

__all__ = [
    "DCSource",
    "LeakyIntegrator",
    "LeakyIntegratorAlpha",
    "LeakyIntegratorExp",
    "PoissonSpikeGenerator",
]

# nrp-core's names are kept (N802).


def PoissonSpikeGenerator(nest: Any, neurons: Any, n: int = 1, conn_spec: Any = "all_to_all") -> Any:  # noqa: N802
    """Poisson input to ``neurons`` (property ``rate``, spikes/s); returns the generators."""
    return _devices.create_poisson_generator(nest, neurons, n, conn_spec)


def DCSource(nest: Any, neurons: Any, n: int = 1, conn_spec: Any = "all_to_all") -> Any:  # noqa: N802
    """DC current into ``neurons`` (property ``amplitude``, pA); returns the generators."""
    return _devices.create_dc_source(nest, neurons, n, conn_spec)


def LeakyIntegrator(  # noqa: N802
    nest: Any, neurons: Any, n: int, n_type: str, leaky_params: dict[str, Any], conn_spec: Any, delay: Any
) -> Any:
    """Leaky integrator cells reading ``neurons`` (property ``V_m``, mV); returns them."""
    return _devices.create_leaky_integrator(nest, neurons, n, n_type, leaky_params, conn_spec, delay)


def LeakyIntegratorAlpha(nest: Any, neurons: Any, n: int = 1, conn_spec: Any = "all_to_all") -> Any:  # noqa: N802
    """Leaky integrators with alpha-shaped synaptic currents; returns them."""
    spec = _devices.ALPHA
    return LeakyIntegrator(nest, neurons, n, spec["model"], spec["params"], conn_spec, spec["delay"])


def LeakyIntegratorExp(nest: Any, neurons: Any, n: int = 1, conn_spec: Any = "all_to_all") -> Any:  # noqa: N802
    """Leaky integrators with exponential synaptic currents and random delays; returns them."""
    spec = _devices.EXP
    return LeakyIntegrator(nest, neurons, n, spec["model"], spec["params"], conn_spec, spec["delay"])
