"""The devices of nrp-core's ``brain_devices``, shared by the ``nest_json`` and ``nest_server`` helpers.

Inputs drive a population: a Poisson spike generator (datapack property ``rate``, spikes/s) or a DC
source (``amplitude``, pA). Outputs read a population: leaky integrators, neurons with an unreachable
threshold whose membrane potential ``V_m`` (mV) integrates the population's spikes. The parameters
are nrp-core's, so brains written for it behave the same.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_dc_source", "create_leaky_integrator", "create_poisson_generator", "ALPHA", "EXP"]

_INPUT_WEIGHT = 0.15  # poisson_generator -> population, static synapse
_INPUT_DELAY_MS = 0.1
_READOUT_WEIGHT = 10.0  # population -> leaky integrator

ALPHA: dict[str, Any] = {
    "model": "iaf_psc_alpha",
    "params": {
        "V_th": 1e10,
        "C_m": 1000.0,
        "tau_m": 10.0,
        "tau_syn_ex": 2.0,
        "tau_syn_in": 2.0,
        "E_L": 0.0,
        "V_reset": 0.0,
        "t_ref": 0.1,
        "I_e": 0.0,
    },
    "delay": 0.1,
}
"""``LeakyIntegratorAlpha``: alpha-shaped synaptic currents, fixed 0.1 ms delay."""

EXP: dict[str, Any] = {
    "model": "iaf_psc_exp",
    "params": {
        "V_th": 1e10,
        "C_m": 1000.0,
        "tau_m": 20.0,
        "tau_syn_ex": 0.5,
        "tau_syn_in": 0.5,
        "E_L": 0.0,
        "V_reset": 0.0,
        "t_ref": 0.1,
        "I_e": 0.0,
    },
    "delay": {"distribution": "uniform", "low": 0.1, "high": 2.0},
}
"""``LeakyIntegratorExp``: exponential synaptic currents, delays uniform in [0.1, 2] ms."""


def _delay(nest: Any, delay: Any) -> Any:
    if isinstance(delay, dict):  # a random delay, NEST 3 style
        return nest.random.uniform(min=delay["low"], max=delay["high"])
    return delay


def create_poisson_generator(nest: Any, neurons: Any, n: int, conn_spec: Any) -> Any:
    """``n`` Poisson generators connected to ``neurons``; returns them."""
    generators = nest.Create("poisson_generator", n)
    syn_spec = {"synapse_model": "static_synapse", "weight": _INPUT_WEIGHT, "delay": _INPUT_DELAY_MS}
    nest.Connect(generators, neurons, conn_spec=conn_spec, syn_spec=syn_spec)
    return generators


def create_dc_source(nest: Any, neurons: Any, n: int, conn_spec: Any) -> Any:
    """``n`` DC generators connected to ``neurons``; returns them."""
    sources = nest.Create("dc_generator", n)
    nest.Connect(sources, neurons, conn_spec=conn_spec)
    return sources


def create_leaky_integrator(
    nest: Any, neurons: Any, n: int, model: str, params: dict[str, Any], conn_spec: Any, delay: Any
) -> Any:
    """``n`` leaky integrator cells of ``model`` reading ``neurons``; returns them."""
    cells = nest.Create(model, n, params)
    cells.set({"V_m": params["E_L"]})
    syn_spec = {"synapse_model": "static_synapse", "weight": _READOUT_WEIGHT, "delay": _delay(nest, delay)}
    nest.Connect(neurons, cells, conn_spec=conn_spec, syn_spec=syn_spec)
    return cells
