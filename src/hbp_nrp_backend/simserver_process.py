"""Spawn, supervise and terminate one Simulation Server process.

The simserver runs as ``<python> -m hbp_nrp_simserver --dir D --id N --script S --config C``
in its own process group, with stdout and stderr in ``<sim_dir>/simulation_<id>.log``. A monitor
thread waits for it and classifies its exit: exit 0, or death by a signal we sent, is normal;
anything else is a failure reported through ``on_exit``.
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

logger = logging.getLogger(__name__)

SIMSERVER_MODULE = "hbp_nrp_simserver"
SECRET_NAMES = frozenset({"NRP_SERVICE_TOKEN", "NRP_MQTT_PASSWORD"})
SECRET_SUFFIXES = ("TOKEN", "PASSWORD", "SECRET", "KEY")
KILL_WAIT = 5.0


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


def describe_exit(returncode: int) -> str:
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

    def error(self) -> dict[str, Any]:
        """The REST ``error`` object of a process failure."""
        return {"msg": describe_exit(self.returncode), "error_type": "Process", "exit_code": self.returncode}


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
    """

    def __init__(
        self,
        command: list[str],
        sim_dir: Path,
        sim_id: int,
        env: Mapping[str, str],
        on_exit: Callable[[ProcessExit], None] | None = None,
    ) -> None:
        self.command = command
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
            )
        finally:
            log_file.close()  # the child holds its own copy
        logger.info("Simulation Server %s started with pid %s", self.sim_id, self._proc.pid)
        self._monitor = threading.Thread(
            target=self._watch, name=f"SimServerMonitor-{self.sim_id}", daemon=True
        )
        self._monitor.start()

    def _watch(self) -> None:
        assert self._proc is not None
        returncode = self._proc.wait()
        requested = self._requested.is_set()
        self.exit = ProcessExit(returncode, requested, classify_exit(returncode, requested))
        self._exited.set()
        log = logger.warning if self.exit.failed else logger.info
        log("Simulation Server %s: %s", self.sim_id, describe_exit(returncode))
        if self.on_exit is not None:
            try:
                self.on_exit(self.exit)
            except Exception:
                logger.exception("Exit handler of simulation %s failed", self.sim_id)

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
                os.kill(self._proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not self._exited.wait(grace):
                logger.warning(
                    "Simulation Server %s did not stop within %.1f s; killing its process group",
                    self.sim_id,
                    grace,
                )
                _kill_group(self._proc.pid)
                self._exited.wait(KILL_WAIT)
        # Engines may outlive a simserver that crashed; its group must not.
        _kill_group(self._proc.pid)
        return self.exit


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
