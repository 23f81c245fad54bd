"""Spawn, supervise and terminate one Simulation Server process.

The simserver runs as ``<python> -m hbp_nrp_simserver --dir D --id N --script S --config C``
in its own process group (and, sandboxed, wrapped by ``prlimit`` and ``bwrap``: see
:mod:`hbp_nrp_backend.sandbox`), with stdout and stderr in ``<sim_dir>/simulation_<id>.log``. A
monitor thread waits for it and classifies its exit: exit 0, or death by a signal we sent, is
normal; anything else is a failure reported through ``on_exit``. A second thread samples the
resident memory and the number of all its processes and threads and the size of its logs and
files, and kills them all beyond a limit (the exit's error then names it).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hbp_nrp_backend.sandbox import MIB, Limits

logger = logging.getLogger(__name__)

SIMSERVER_MODULE = "hbp_nrp_simserver"
SECRET_NAMES = frozenset({"NRP_SERVICE_TOKEN", "NRP_MQTT_PASSWORD"})
SECRET_SUFFIXES = ("TOKEN", "PASSWORD", "SECRET", "KEY")
KILL_WAIT = 5.0
#: Seconds between two samples of a simulation's memory and log sizes.
LIMIT_PERIOD = 0.2
#: The files of a simulation's directory are checked every FILE_SAMPLES samples.
FILE_SAMPLES = 5
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


def child_environment(environ: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The simserver's environment: ``environ`` without secrets, plus ``extra``.

    Dropped: ``NRP_SERVICE_TOKEN``, ``NRP_MQTT_PASSWORD`` and every variable whose name ends in
    ``TOKEN``, ``PASSWORD``, ``SECRET`` or ``KEY`` (the user's script runs in that process).
    """
    env = {
        name: value
        for name, value in environ.items()
        if name.upper() not in SECRET_NAMES and not name.upper().endswith(SECRET_SUFFIXES)
    }
    env.update(extra or {})
    return env


def simserver_command(
    sim_dir: Path,
    sim_id: int,
    script: str,
    config: str,
    verbose: bool = False,
    module: str = SIMSERVER_MODULE,
) -> list[str]:
    """The command line that starts a Simulation Server (``<python> -m hbp_nrp_simserver ...``)."""
    command = [sys.executable, "-m", module, "--dir", str(sim_dir), "--id", str(sim_id)]
    command += ["--script", script, "--config", config]
    if verbose:
        command.append("--verbose")
    return command


def describe_exit(returncode: int, limits: Limits | None = None) -> str:
    if limits is not None and returncode == -signal.SIGXCPU:
        return (
            f"Simulation Server exceeded the CPU time limit of {limits.cpu_seconds} s "
            "(NRP_SANDBOX_CPU_SECONDS)"
        )
    if limits is not None and returncode == -signal.SIGXFSZ:
        return f"Simulation Server exceeded the file size limit of {limits.file_mb} MiB (NRP_SANDBOX_FILE_MB)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"Simulation Server was killed by signal {name}"
    return f"Simulation Server exited with code {returncode}"


@dataclass(frozen=True)
class ProcessExit:
    """How the simserver ended.

    Attributes:
        returncode: ``Popen.returncode`` (negative: killed by that signal).
        requested: we had asked it to terminate before it ended.
        failed: the exit counts as a failure (see :func:`classify_exit`).
    """

    returncode: int
    requested: bool
    failed: bool
    reason: str = ""
    limit: bool = False

    def error(self) -> dict[str, Any]:
        """The REST ``error`` object of a process failure."""
        msg = self.reason or describe_exit(self.returncode)
        return {"msg": msg, "error_type": "Limit" if self.limit else "Process", "exit_code": self.returncode}


def classify_exit(returncode: int, requested: bool) -> bool:
    """True when the exit is a failure: non-zero, and not death by our own SIGTERM or SIGKILL."""
    if returncode == 0:
        return False
    if requested and returncode in (-signal.SIGTERM, -signal.SIGKILL):
        return False
    return True


class SimulationServerProcess:
    """One supervised simserver process.

    Args:
        command: the full command line (see :func:`simserver_command`).
        sim_dir: working directory; the log file ``simulation_<id>.log`` is created there.
        sim_id: the simulation id (names the log file).
        env: the child's complete environment (see :func:`child_environment`).
        on_exit: called once from the monitor thread with the :class:`ProcessExit`; it must not
            block on anything the terminating thread holds (it should hand work to another thread).
        die_with_parent: the process gets SIGKILL when this one dies (``PR_SET_PDEATHSIG``). Linux
            ties that to the *thread* that spawned it, so the monitor thread, which lives exactly as
            long as the process, spawns it.
    """

    def __init__(
        self,
        command: list[str],
        sim_dir: Path,
        sim_id: int,
        env: Mapping[str, str],
        on_exit: Callable[[ProcessExit], None] | None = None,
        limits: Limits | None = None,
        sandboxed: bool = False,
        die_with_parent: bool = False,
    ) -> None:
        self.command = command
        self.die_with_parent = die_with_parent
        self.limits = limits
        self.sandboxed = sandboxed
        self.limit_error = ""
        self.sim_dir = sim_dir
        self.sim_id = sim_id
        self.env = dict(env)
        self.on_exit = on_exit
        self.log_path = sim_dir / f"simulation_{sim_id}.log"
        self.exit: ProcessExit | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._exited = threading.Event()
        self._requested = threading.Event()
        self._monitor: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and not self._exited.is_set()

    def start(self) -> None:
        """Spawn the process and its monitor thread.

        Raises:
            FileExistsError: the log file already exists (it is opened in exclusive mode).
            OSError: the process could not be started.
        """
        log_file = open(self.log_path, "xb")  # noqa: SIM115 - closed right after the spawn
        if self.die_with_parent:
            hook = _kill_with_parent_hook()
            spawned = threading.Event()
            failure: list[BaseException] = []

            def spawn_and_watch() -> None:
                try:
                    self._spawn(log_file, hook)
                except BaseException as exc:
                    failure.append(exc)
                    return
                finally:
                    spawned.set()
                self._watch()

            self._monitor = threading.Thread(
                target=spawn_and_watch, name=f"SimServerMonitor-{self.sim_id}", daemon=True
            )
            self._monitor.start()
            spawned.wait()
            if failure:
                raise failure[0]
        else:
            self._spawn(log_file, None)
            self._monitor = threading.Thread(
                target=self._watch, name=f"SimServerMonitor-{self.sim_id}", daemon=True
            )
            self._monitor.start()
        logger.info("Simulation Server %s started with pid %s", self.sim_id, self.pid)
        if self.limits is not None and any(
            (
                self.limits.memory_mb,
                self.limits.cpu_seconds,
                self.limits.processes,
                self.limits.log_mb,
                self.limits.file_mb,
            )
        ):
            threading.Thread(
                target=self._watch_limits, name=f"SimServerLimits-{self.sim_id}", daemon=True
            ).start()

    def _spawn(self, log_file: Any, preexec: Callable[[], None] | None) -> None:
        try:
            self._proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.sim_dir,
                env=self.env,
                close_fds=True,
                start_new_session=True,
                preexec_fn=preexec,
            )
        finally:
            log_file.close()  # the child holds its own copy

    def _watch(self) -> None:
        assert self._proc is not None
        returncode = self._proc.wait()
        if self.sandboxed and returncode > 128:  # bwrap exits 128 + N when its command died by signal N
            returncode = 128 - returncode
        requested = self._requested.is_set()
        if self.limit_error:
            self.exit = ProcessExit(returncode, requested, True, self.limit_error, limit=True)
        else:
            failed = classify_exit(returncode, requested)
            limit = self.limits is not None and returncode in (-signal.SIGXCPU, -signal.SIGXFSZ)
            if limit:
                reason = describe_exit(returncode, self.limits)
            elif failed and self.sandboxed:
                reason = self._sandbox_error()  # "" when the simserver itself failed
            else:
                reason = ""
            self.exit = ProcessExit(returncode, requested, failed, reason, limit)
        self._exited.set()
        log = logger.warning if self.exit.failed else logger.info
        log("Simulation Server %s: %s", self.sim_id, self.exit.reason or describe_exit(returncode))
        if self.on_exit is not None:
            try:
                self.on_exit(self.exit)
            except Exception:
                logger.exception("Exit handler of simulation %s failed", self.sim_id)

    def _sandbox_error(self) -> str:
        """``Sandbox could not start: <bwrap's message>`` when bwrap, not the simserver, failed."""
        try:
            with open(self.log_path, "rb") as log:
                first = log.readline(2000).decode(errors="replace").strip()
        except OSError:
            return ""
        for tool in ("bwrap:", "setpriv:", "prlimit:"):
            if first.startswith(tool):
                return f"Sandbox could not start ({first}); see NRP_SANDBOX in docs/security.md"
        return ""

    def _watch_limits(self) -> None:
        """Every :data:`LIMIT_PERIOD` check the limits (:meth:`limit_crossed`); kill everything beyond one."""
        assert self._proc is not None
        samples = 0
        while not self._exited.wait(LIMIT_PERIOD):
            error = self.limit_crossed(files=samples % FILE_SAMPLES == 0)
            samples += 1
            if error:
                logger.warning("Simulation Server %s: %s; killing it", self.sim_id, error)
                self.limit_error = error
                self._kill_all()
                return

    def limit_crossed(self, files: bool = True) -> str:
        """The error naming the first limit the simulation crossed, or ``""``.

        Memory: resident memory of all its processes; CPU time: of all its processes, ended ones
        included (each process also has it as its own limit: SIGXCPU); processes: its processes and
        threads (the kernel refuses the next one at the limit when the simulation has a uid of its
        own); logs: each top-level ``*.log``; with ``files``, any file of its directory that reached
        the file size limit (the kernel refused a write beyond it).
        """
        assert self._proc is not None and self.limits is not None
        limits = self.limits
        tree = process_tree(self._proc.pid)
        if limits.memory_mb:
            used = sum(resident_memory(pid) for pid in tree)
            if used > limits.memory_mb * MIB:
                return (
                    f"Simulation exceeded the memory limit of {limits.memory_mb} MiB "
                    f"(NRP_SANDBOX_MEMORY_MB): {used // MIB} MiB resident"
                )
        if limits.cpu_seconds:
            cpu = sum(cpu_seconds(pid) for pid in tree)
            if cpu >= limits.cpu_seconds:
                return (
                    f"Simulation exceeded the CPU time limit of {limits.cpu_seconds} s "
                    f"(NRP_SANDBOX_CPU_SECONDS): {cpu:.0f} s used"
                )
        if limits.processes:
            tasks = sum(task_count(pid) for pid in tree)
            if tasks >= limits.processes:
                return (
                    f"Simulation reached the process limit of {limits.processes} "
                    f"(NRP_SANDBOX_PROCESSES): {tasks} processes and threads"
                )
        if limits.log_mb:
            for log in self.sim_dir.glob("*.log"):
                size = _size(log)
                if size > limits.log_mb * MIB:
                    return (
                        f"Simulation exceeded the log size limit of {limits.log_mb} MiB "
                        f"(NRP_SANDBOX_LOG_MB): {log.name} is {size // MIB} MiB"
                    )
        if files and limits.file_mb:
            for folder, _dirs, names in os.walk(self.sim_dir):
                for name in names:
                    if _size(Path(folder, name)) >= limits.file_mb * MIB:
                        relative = Path(folder, name).relative_to(self.sim_dir)
                        return (
                            f"Simulation reached the file size limit of {limits.file_mb} MiB "
                            f"(NRP_SANDBOX_FILE_MB): {relative}"
                        )
        return ""

    def _main_pid(self) -> int | None:
        """The simserver's pid: the child of bwrap's init (the child of the bwrap we started)."""
        assert self._proc is not None
        if not self.sandboxed:
            return self._proc.pid
        for init in _children(self._proc.pid):
            for child in _children(init):
                return child
        return None

    def _kill_all(self) -> None:
        """SIGKILL every process of the simulation: bwrap's init takes its PID namespace along."""
        assert self._proc is not None
        pids = process_tree(self._proc.pid)
        if self.sandboxed:
            pids = [pid for pid in pids if pid in _children(self._proc.pid)] or pids
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _kill_group(self._proc.pid)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the process has ended; True if it has."""
        if self._proc is None:
            return True
        return self._exited.wait(timeout)

    def terminate(self, grace: float) -> ProcessExit | None:
        """Stop the process: SIGTERM, and after ``grace`` seconds SIGKILL to its process group.

        Returns:
            how it ended, or ``None`` if it was never started or could not be waited for.
        """
        if self._proc is None:
            return None
        self._requested.set()
        if not self._exited.is_set():
            try:
                os.kill(self._main_pid() or self._proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not self._exited.wait(grace):
                logger.warning(
                    "Simulation Server %s did not stop within %.1f s; killing its process group",
                    self.sim_id,
                    grace,
                )
                self._kill_all()
                self._exited.wait(KILL_WAIT)
        # Engines may outlive a simserver that crashed; its group must not (a PID namespace ends
        # with its init, so a sandboxed simulation has nothing left by now).
        _kill_group(self._proc.pid)
        return self.exit


def _kill_with_parent_hook() -> Callable[[], None]:
    """The ``preexec_fn`` asking Linux for SIGKILL when the spawning thread goes.

    ``prctl`` is looked up here, in the parent: between fork and exec the child of a threaded
    process (a Ray worker) must not load libraries or take locks another thread may have held.
    """
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    kill = int(signal.SIGKILL)

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, kill, 0, 0, 0)

    return hook


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (all its threads'), from ``/proc``."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a sandbox's orphans stay below its init)."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending += _children(current)
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of its children it has reaped (user and system), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return 0.0


def task_count(pid: int) -> int:
    """Threads of ``pid`` (1 for a single-threaded process, 0 once it has gone)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[17])
    except (OSError, ValueError, IndexError):
        return 0


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def resident_memory(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 once it has gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def process_carries_id(pid: int, sim_id: int) -> bool:
    """True if process ``pid`` is alive and its command line holds ``--id <sim_id>`` (PIDs are reused)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    args = [arg.decode(errors="replace") for arg in raw.split(b"\0")]
    return any(args[i] in ("--id", "-i") and args[i + 1] == str(sim_id) for i in range(len(args) - 1))


def terminate_orphan(pid: int, grace: float) -> None:
    """Terminate a simserver we did not spawn (restart reconciliation): SIGTERM, then SIGKILL its group."""
    import time

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            break
        time.sleep(0.05)
    _kill_group(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"
