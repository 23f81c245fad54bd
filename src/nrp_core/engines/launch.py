"""Engines as the loop sees them: :func:`create_engine` turns one defaulted engine config into an
:class:`~nrp_core.engines.handle.EngineHandle` of the transport its ``EngineLaunchCommand`` asks for.

- ``BasicFork`` (the default): :class:`~nrp_core.engines.process.EngineProcess`, the engine in its
  own process over a local channel;
- ``InProcess``: :class:`~nrp_core.engines.in_process.InProcessEngine`, in the loop's process;
- ``EmptyLaunchCommand``: an engine server already running at ``ServerAddress``, reached over gRPC
  (``EngineGrpcService``, :class:`~nrp_core.engines.grpc.GrpcEngine`) for gRPC engine types and
  over HTTP (:class:`~nrp_core.engines.http.HttpEngine`) for JSON ones.

Every transport reports failures as :class:`EngineError`, naming the engine, the operation, the
user's file and line and carrying the engine-side traceback. The names of this module stay
importable from here.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from nrp_core.config import ENGINE_PROC_CMDS
from nrp_core.engines.handle import ENGINE_TYPES, EngineError, EngineHandle, register_engine_type
from nrp_core.engines.http import HttpEngine
from nrp_core.engines.in_process import InProcessEngine
from nrp_core.engines.process import EngineProcess, ExternalProcess

__all__ = [
    "ENGINE_TYPES",
    "EngineError",
    "EngineHandle",
    "EngineProcess",
    "ExternalProcess",
    "HttpEngine",
    "InProcessEngine",
    "create_engine",
    "register_engine_type",
]

logger = logging.getLogger(__name__)

GRPC_ENGINE_TYPES = frozenset({"python_grpc", "datatransfer_grpc_engine"})
"""Engine types whose servers speak nrp-core's ``EngineGrpcService``."""


def _names_program(proc_cmd: str, program: str) -> bool:
    """True when ``proc_cmd`` runs nrp-core's ``program`` (by any path, e.g. behind a wrapper script)."""
    try:
        words = shlex.split(proc_cmd)
    except ValueError:
        return False
    return any(Path(word).name == program for word in words)


def create_engine(
    config: Mapping[str, Any], experiment_dir: Path, output: int | IO[Any] | None = None
) -> EngineHandle:
    """The handle for one (type-defaulted) engine config.

    Args:
        config: the engine config, defaults applied (``complete_engine_config``).
        experiment_dir: working directory of engine processes; base of relative paths.
        output: where engine processes write stdout and stderr (None: inherited).

    Raises:
        EngineError: unknown ``EngineType`` or unsupported ``EngineLaunchCommand``.
    """
    name = config.get("EngineName", "?")
    engine_type = config.get("EngineType")
    if engine_type not in ENGINE_TYPES:
        raise EngineError(name, "launch", f'Failed to find engine interface "{engine_type}"')
    default_cmd = ENGINE_PROC_CMDS.get(engine_type)
    proc_cmd = config.get("EngineProcCmd")
    if default_cmd and proc_cmd and proc_cmd != default_cmd:
        if _names_program(str(proc_cmd), default_cmd):
            # nrp-core's own engine program, maybe behind its Xpra wrapper: ours serves the same engine.
            logger.info(
                "engine %s: EngineProcCmd %r runs this runtime's %s engine", name, proc_cmd, engine_type
            )
        else:
            logger.warning(
                "engine %s: custom EngineProcCmd %r is not supported yet and is ignored", name, proc_cmd
            )
    launch = (config.get("EngineLaunchCommand") or {}).get("LaunchType", "BasicFork")
    if launch == "InProcess":
        return InProcessEngine(config, experiment_dir)
    if launch == "BasicFork":
        return EngineProcess(config, experiment_dir, output)
    if launch == "EmptyLaunchCommand" and engine_type == "nest_server":
        return EngineProcess(config, experiment_dir, output)  # it connects to the running NEST Server
    if launch == "EmptyLaunchCommand":
        if engine_type in GRPC_ENGINE_TYPES:
            from nrp_core.engines.grpc import GrpcEngine

            return GrpcEngine(config, experiment_dir)
        return HttpEngine(config, experiment_dir)
    raise EngineError(name, "launch", f"EngineLaunchCommand LaunchType '{launch}' is not supported yet")
