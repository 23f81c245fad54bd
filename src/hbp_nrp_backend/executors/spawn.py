"""Start one Simulation Server: the command, its environment, the sandbox, the supervised process.

Shared by the executors: the local one runs it in the REST server's process, the Ray one in the
simulation's actor on a cluster node. Everything it needs travels in :class:`SpawnSettings` (a
plain dataclass, so it can be shipped to a node) and the simulation's own extra environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hbp_nrp_backend.sandbox import SandboxConfig, hand_over, sandbox_uid, wrap_command
from hbp_nrp_backend.simserver_process import (
    ProcessExit,
    SimulationServerProcess,
    child_environment,
    simserver_command,
)


@dataclass(frozen=True)
class SpawnSettings:
    """How Simulation Servers are started, wherever they run.

    Attributes:
        module: the module run as ``python -m`` (``NRP_SIMSERVER_MODULE``).
        verbose: start it with ``--verbose``.
        sandbox: confinement and limits (``NRP_SANDBOX``, ``NRP_SANDBOX_*``).
        protected: folders the sandbox hides (data root, storage root, the REST server's state).
    """

    module: str = "hbp_nrp_simserver"
    verbose: bool = False
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    protected: tuple[Path, ...] = ()


def spawn_simserver(
    sim_dir: Path,
    sim_id: int,
    main_script: str,
    config_name: str,
    settings: SpawnSettings,
    extra_env: Mapping[str, str],
    on_exit: Callable[[ProcessExit], None] | None = None,
    die_with_parent: bool = False,
) -> SimulationServerProcess:
    """Start the Simulation Server of ``sim_id`` in ``sim_dir`` (already holding the experiment).

    Its environment is this process's without secrets plus ``extra_env`` (broker address, prefix,
    its MQTT credential). Sandboxed as root, the folder is handed to the simulation's own uid first.
    ``die_with_parent`` kills it when this process dies (a Ray actor's simulation must not outlive it).

    Raises:
        OSError: the process could not be started.
    """
    command = simserver_command(
        sim_dir, sim_id, main_script, config_name, verbose=settings.verbose, module=settings.module
    )
    env = child_environment(os.environ, {"PYTHONUNBUFFERED": "1", **extra_env})
    sandbox = settings.sandbox
    uid = sandbox_uid(sandbox, sim_id)
    if uid is not None:
        hand_over(sim_dir, uid)
    command = wrap_command(command, sandbox, sim_dir, settings.module, settings.protected, uid)
    process = SimulationServerProcess(
        command,
        sim_dir,
        sim_id,
        env,
        on_exit=on_exit,
        limits=sandbox.limits,
        sandboxed=sandbox.enabled,
        die_with_parent=die_with_parent,
    )
    process.start()
    return process
