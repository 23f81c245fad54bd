"""Build the executor ``NRP_EXECUTOR`` names (the Ray one only imports Ray's side when chosen)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hbp_nrp_backend.config import BackendConfig
    from hbp_nrp_backend.executors import Executor
    from hbp_nrp_backend.simulation import SimulationHost


def create_executor(config: BackendConfig, host: SimulationHost) -> Executor:
    """The executor of ``config.executor`` for the simulations of ``host``."""
    if config.executor == "ray":
        from hbp_nrp_backend.executors.ray_executor import RayExecutor

        return RayExecutor(host)
    from hbp_nrp_backend.executors.local import LocalExecutor

    return LocalExecutor(host)
