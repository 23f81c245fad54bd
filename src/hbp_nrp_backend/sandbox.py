"""The sandbox every Simulation Server runs in (``NRP_SANDBOX``), and the limits of a simulation.

With ``bwrap`` (bubblewrap) the command becomes::

    prlimit --cpu=... --fsize=... [--nproc=...] -- bwrap --unshare-pid ... -- [setpriv --reuid=U ... --]
        <python> -m hbp_nrp_simserver ...

- identity: a REST server running as root runs it as uid/gid ``NRP_SANDBOX_UID_BASE + id`` (one
  unprivileged identity per simulation, no capability, no supplementary group: ``setpriv`` inside
  the sandbox); otherwise it keeps the server's uid (bwrap then uses an unprivileged user namespace);
- file system: an empty root with the system (``/usr``, ``/etc``, the ``/bin``/``/lib`` links),
  the Python installation and our packages read-only, the simulation directory read-write at its
  own path, a private ``/tmp`` and ``/dev/shm`` (tmpfs of ``NRP_SANDBOX_TMP_MB`` each), a new
  ``/proc`` and a minimal ``/dev``. Nothing else: no data root, no storage, no other simulation;
- processes: a PID namespace whose init is bwrap: when the Simulation Server ends, or is killed,
  the kernel kills every process left in it, whatever session or group it made. ``--die-with-parent``
  kills the sandbox when the *thread* that started it ends (``PR_SET_PDEATHSIG``): start it from a
  thread that lives as long as the server (a WSGI worker thread does);
- network: shared, so the simserver reaches the broker over TCP loopback.

Limits apply in both modes: CPU time and file size per process (``prlimit``), processes per
simulation (only with a uid of its own), and what the REST server samples
(``SimulationServerProcess.limit_crossed``): the resident memory, CPU time and number of all its
processes together, the size of its logs and files.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hbp_nrp_commons.settings import SettingsError, env_int

SANDBOX_MODES = ("auto", "bwrap", "none")
#: Read-only in the sandbox when they exist (links are recreated as links).
SYSTEM_PATHS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")
#: Packages the Simulation Server imports: their folders are bound read-only (editable installs).
PACKAGES = ("hbp_nrp_commons", "hbp_nrp_simserver", "nrp_core")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-simulation limits; 0 switches one off.

    Attributes:
        memory_mb: resident memory of all the simulation's processes together (``NRP_SANDBOX_MEMORY_MB``).
        cpu_seconds: CPU time of all the simulation's processes together, and of each
            (``NRP_SANDBOX_CPU_SECONDS``).
        file_mb: size of any file a process writes (``NRP_SANDBOX_FILE_MB``).
        processes: processes and threads of the simulation's uid (``NRP_SANDBOX_PROCESSES``).
        log_mb: size of each top-level ``*.log`` file of the simulation directory (``NRP_SANDBOX_LOG_MB``).
        tmp_mb: size of its private ``/tmp`` and of its ``/dev/shm`` (``NRP_SANDBOX_TMP_MB``).
    """

    memory_mb: int = 2560
    cpu_seconds: int = 86400
    file_mb: int = 2048
    processes: int = 512
    log_mb: int = 200
    tmp_mb: int = 512


@dataclass(frozen=True)
class SandboxConfig:
    """``mode`` is ``bwrap`` or ``none``; ``requested`` ``auto`` means ``bwrap`` when installed."""

    mode: str = "none"
    requested: str = "auto"
    uid_base: int = 1_800_000_000
    limits: Limits = field(default_factory=Limits)

    @property
    def enabled(self) -> bool:
        return self.mode == "bwrap"


def load_sandbox_config(env: Mapping[str, str]) -> SandboxConfig:
    """Read ``NRP_SANDBOX`` and the ``NRP_SANDBOX_*`` limits.

    Raises:
        SettingsError: an unknown mode, ``bwrap`` asked for but not installed, a bad number.
    """
    mode = env.get("NRP_SANDBOX", "").strip().lower() or "auto"
    if mode not in SANDBOX_MODES:
        raise SettingsError(f"NRP_SANDBOX must be one of {', '.join(SANDBOX_MODES)}, got {mode!r}")
    bwrap = shutil.which("bwrap") is not None
    if mode == "bwrap" and not bwrap:
        raise SettingsError("NRP_SANDBOX=bwrap but bwrap is not installed (apt-get install bubblewrap)")
    requested = mode
    if mode == "auto":
        mode = "bwrap" if bwrap else "none"
    limits = Limits(
        memory_mb=env_int(env, "NRP_SANDBOX_MEMORY_MB", Limits.memory_mb, minimum=0),
        cpu_seconds=env_int(env, "NRP_SANDBOX_CPU_SECONDS", Limits.cpu_seconds, minimum=0),
        file_mb=env_int(env, "NRP_SANDBOX_FILE_MB", Limits.file_mb, minimum=0),
        processes=env_int(env, "NRP_SANDBOX_PROCESSES", Limits.processes, minimum=0),
        log_mb=env_int(env, "NRP_SANDBOX_LOG_MB", Limits.log_mb, minimum=0),
        tmp_mb=env_int(env, "NRP_SANDBOX_TMP_MB", Limits.tmp_mb, minimum=1),
    )
    uid_base = env_int(env, "NRP_SANDBOX_UID_BASE", SandboxConfig.uid_base, minimum=1000)
    return SandboxConfig(mode=mode, requested=requested, uid_base=uid_base, limits=limits)


def sandbox_uid(config: SandboxConfig, sim_id: int) -> int | None:
    """The simulation's own uid (and gid) when the server runs as root and sandboxes, else ``None``."""
    if not config.enabled or os.geteuid() != 0:
        return None
    return config.uid_base + sim_id % 1_000_000


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def python_paths(module: str) -> list[Path]:
    """Folders the Simulation Server needs to read: the Python installation and our packages.

    ``sys.prefix`` and ``sys.base_prefix``, every folder of ``sys.path`` (site-packages, a
    ``PYTHONPATH``) and the folder of each package it imports (editable installs point outside
    site-packages). The current directory (``''`` in ``sys.path``) is never included.
    """
    found: list[Path] = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)]
    found += [Path(entry) for entry in sys.path if entry and os.path.isabs(entry)]
    for name in {*PACKAGES, module.split(".")[0]}:
        spec = importlib.util.find_spec(name)
        if spec is not None:
            found += [Path(location) for location in spec.submodule_search_locations or []]
            if spec.origin and spec.origin not in ("built-in", "frozen"):
                found.append(Path(spec.origin).parent)
    return found


def readonly_paths(candidates: Iterable[Path], protected: Iterable[Path]) -> list[Path]:
    """Existing folders of ``candidates`` (resolved, nested ones dropped) that neither hold nor lie in
    a ``protected`` folder (the data root, the storage root)."""
    guarded = [p.resolve() for p in protected]
    folders: list[Path] = []
    for candidate in candidates:
        path = candidate.resolve()
        if not path.is_dir() or path == Path("/"):
            continue
        if any(_inside(path, p) or _inside(p, path) for p in guarded):
            continue
        folders.append(path)
    kept: list[Path] = []
    for path in sorted(set(folders), key=lambda p: len(p.parts)):
        if not any(_inside(path, outer) for outer in kept):
            kept.append(path)
    return kept


def bwrap_arguments(sim_dir: Path, readonly: Iterable[Path], tmp_mb: int) -> list[str]:
    """The ``bwrap ...`` options (without the command) for one simulation."""
    args = ["bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    args += ["--die-with-parent", "--new-session", "--hostname", "nrp-simulation"]
    for name in SYSTEM_PATHS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    made: set[Path] = set()

    def parents(path: Path) -> list[str]:
        """``--dir`` for each missing parent, world-traversable (bwrap would make them 0700 as root)."""
        created: list[str] = []
        for parent in reversed(path.parents):
            if parent != Path("/") and parent not in made and str(parent) not in SYSTEM_PATHS:
                made.add(parent)
                created += ["--perms", "0755", "--dir", str(parent)]
        return created

    # the private /tmp first: a Python installation or source tree under /tmp is bound into it
    # afterwards (mounted later, the tmpfs would hide it)
    size = str(tmp_mb * MIB)
    args += ["--proc", "/proc", "--dev", "/dev"]
    for tmp in ("/tmp", "/dev/shm"):
        made.add(Path(tmp))
        args += ["--perms", "1777", "--size", size, "--tmpfs", tmp]
    for path in readonly:
        if not any(_inside(path, Path(name)) for name in SYSTEM_PATHS if Path(name).is_dir()):
            args += [*parents(path), "--ro-bind", str(path), str(path)]
    cpu = Path("/sys/devices/system/cpu")
    if cpu.is_dir():  # OpenMP (NEST) reads the CPU count there
        args += ["--ro-bind", str(cpu), str(cpu)]
    args += [*parents(sim_dir), "--bind", str(sim_dir), str(sim_dir), "--chdir", str(sim_dir)]
    args += ["--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp"]
    return args


def prlimit_arguments(limits: Limits, own_uid: bool) -> list[str]:
    """``prlimit`` options: CPU seconds (SIGXCPU, SIGKILL 5 s later), file size, processes."""
    args = ["prlimit"]
    if limits.cpu_seconds:
        args.append(f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 5}")
    if limits.file_mb:
        args.append(f"--fsize={limits.file_mb * MIB}")
    if limits.processes and own_uid:
        args.append(f"--nproc={limits.processes}")
    return [*args, "--"] if len(args) > 1 else []


def drop_privileges(uid: int) -> list[str]:
    """``setpriv`` options that make the rest of the command uid and gid ``uid``, with no capability,
    no supplementary group and no way back (``no_new_privs``)."""
    return [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


def wrap_command(
    command: list[str],
    config: SandboxConfig,
    sim_dir: Path,
    module: str,
    protected: Iterable[Path],
    uid: int | None,
) -> list[str]:
    """``command`` inside the sandbox (``bwrap``) and under the limits (``prlimit``).

    As root, bwrap runs privileged (it can bind a Python installation under ``/root``, which the
    simulation's uid could not reach) and ``setpriv`` drops to ``uid`` inside, before the command.
    """
    prefix = prlimit_arguments(config.limits, uid is not None)
    if not config.enabled:
        return [*prefix, *command]
    readonly = readonly_paths(python_paths(module), protected)
    bwrap = bwrap_arguments(sim_dir, readonly, config.limits.tmp_mb)
    drop = drop_privileges(uid) if uid is not None else []
    return [*prefix, *bwrap, "--", *drop, *command]


def hand_over(sim_dir: Path, uid: int) -> None:
    """Give the simulation directory (and everything in it) to the simulation's uid, mode 0700."""
    for folder, dirs, files in os.walk(sim_dir):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(folder, name), uid, uid)
        os.chown(folder, uid, uid)
    os.chmod(sim_dir, 0o700)
