"""The experiment configuration as the Simulation Server sees it.

nrp-core itself loads the configuration file again (with the overrides built here); this module
only parses and validates it early, so errors are reported as ``Loading`` before anything starts,
and derives the step budget and the nrp-core command-line overrides.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hbp_nrp_simserver.errors import ConfigurationError
from hbp_nrp_simserver.wrapper import max_timesteps

logger = logging.getLogger(__name__)

DEFAULT_ENGINE_TIMESTEP = 0.01
DATATRANSFER_ENGINE_TYPE = "datatransfer_grpc_engine"
DEFAULT_DATATRANSFER_BROKER = "localhost:1883"


@dataclass(frozen=True)
class ExperimentConfig:
    """What the Simulation Server needs from ``simulation_config.json``.

    Attributes:
        path: the configuration file.
        data: the validated document with the nrp-core schema defaults applied.
        timeout: ``SimulationTimeout`` in seconds (0 = no step allowed).
        timestep: the loop timestep in seconds (minimum ``EngineTimestep``; 0.01 with no engines).
        timestep_ns: the same timestep in integer nanoseconds, as nrp-core counts it.
        datatransfer_index: index of the ``datatransfer_grpc_engine`` in ``EngineConfigs``, if any.
    """

    path: Path
    data: dict[str, Any]
    timeout: float
    timestep: float
    timestep_ns: int
    datatransfer_index: int | None = None

    @property
    def max_timesteps(self) -> int:
        """The number of loop steps the simulation may run (see :func:`max_timesteps`)."""
        return max_timesteps(self.timeout, self.timestep)

    @property
    def name(self) -> str:
        return str(self.data.get("SimulationName", self.path.parent.name))


def load_experiment_config(path: str | Path) -> ExperimentConfig:
    """Parse and validate an experiment configuration.

    Args:
        path: the configuration file; relative paths are relative to the current directory
            (the simulation directory in the Simulation Server).

    Returns:
        the configuration with its derived values.

    Raises:
        OSError: the file cannot be read.
        ConfigurationError: invalid JSON (``Could not parse experiment configuration <path>: ...``)
            or a document nrp-core rejects.
    """
    from nrp_core import config as core_config

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"Could not parse experiment configuration {path}: {exc}") from exc
    try:
        data, _ = core_config.load_simulation_config(str(path.resolve()), str(path.resolve().parent))
    except OSError:
        raise
    except core_config.ConfigError as exc:
        raise ConfigurationError(str(exc)) from exc
    except Exception as exc:
        raise ConfigurationError(f"Invalid experiment configuration {path}: {exc}") from exc

    engines = data.get("EngineConfigs") or []
    steps_ns = [core_config.timestep_to_ns(e.get("EngineTimestep", DEFAULT_ENGINE_TIMESTEP)) for e in engines]
    timestep_ns = min(steps_ns) if steps_ns else core_config.timestep_to_ns(DEFAULT_ENGINE_TIMESTEP)
    if data.get("SimulationLoop") == "EventLoop":
        # The Event Loop ticks at its own timestep: nrp.run_loop(n) runs n of those.
        timestep_ns = core_config.timestep_to_ns((data.get("EventLoop") or {}).get("Timestep", 0.01))
    if timestep_ns <= 0:
        raise ConfigurationError(
            f"Invalid experiment configuration {path}: the loop timestep is not positive"
        )
    timestep = timestep_ns / 1e9
    declared = data.get("SimulationTimestep")
    if declared is not None and not math.isclose(float(declared), timestep, rel_tol=1e-6):
        logger.warning(
            "SimulationTimestep %s differs from the nrp-core loop timestep %s; using %s",
            declared,
            timestep,
            timestep,
        )
    timeout = float(data.get("SimulationTimeout", 0) or 0)
    index = next(
        (i for i, engine in enumerate(engines) if engine.get("EngineType") == DATATRANSFER_ENGINE_TYPE),
        None,
    )
    return ExperimentConfig(
        path=path,
        data=data,
        timeout=timeout,
        timestep=timestep,
        timestep_ns=timestep_ns,
        datatransfer_index=index,
    )


def nrp_core_args(config: ExperimentConfig, sim_id: str, broker: str, prefix: str) -> str:
    """The ``args`` string (``-o`` overrides) for ``nrp_core.NrpCore``.

    Only experiments with a ``datatransfer_grpc_engine`` get overrides: its simulation id, the
    effective broker and the topic prefix, values JSON-quoted.
    """
    if config.datatransfer_index is None:
        return ""
    key = f"EngineConfigs.{config.datatransfer_index}"
    return " ".join(
        [
            f"-o {key}.simulationID={json.dumps(str(sim_id))}",
            f"-o {key}.MQTTBroker={json.dumps(broker)}",
            f"-o {key}.MQTTPrefix={json.dumps(prefix)}",
        ]
    )
