"""The Simulation Server process: command line, main flow, signals and shutdown.

One process per simulation, spawned by the REST backend as::

    python -m hbp_nrp_simserver --dir <sim_dir> --id <id> --script <mainScript> --config <config>

It connects to the MQTT broker, waits for the backend's retained init message, and then runs the
experiment's main script whenever the lifecycle says so.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from hbp_nrp_commons.log_setup import configure_root_logging
from hbp_nrp_commons.settings import MqttSettings
from hbp_nrp_simserver.config import ExperimentConfig, load_experiment_config, nrp_core_args
from hbp_nrp_simserver.errors import ErrorType, ScriptError, ServerProcessExitCodes
from hbp_nrp_simserver.notifier import SHUTDOWN_TASK, MQTTNotifier, status_payload
from hbp_nrp_simserver.script_runner import NRPScriptRunner, nrp_core_client_factory

logger = logging.getLogger(__name__)

DONE_WAIT = 10.0
WATCHDOG_PERIOD = 0.5


# ----------------------------------------------------------------------------------- set-up


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (as the backend spawns the server); a usage error exits with code 2."""
    parser = argparse.ArgumentParser(prog="hbp_nrp_simserver", description="NRP Simulation Server")
    parser.add_argument(
        "-d", "--dir", required=True, help="simulation directory; the process changes into it"
    )
    parser.add_argument("-s", "--script", required=True, help="main script, relative to the directory")
    parser.add_argument("-c", "--config", required=True, help="experiment configuration file name")
    parser.add_argument("-i", "--id", required=True, help="simulation id")
    parser.add_argument("--logfile", default=None, help="root-logger file (default: stdout)")
    parser.add_argument("--verbose", action="store_true", help="log at DEBUG instead of INFO")
    parser.add_argument("--nrp-address", default=None, help="accepted and ignored (in-process nrp-core)")
    return parser.parse_args(argv)


def configure_logging(verbose: bool = False, logfile: str | None = None) -> logging.Handler:
    """Root logger to stdout (or ``logfile``) in the shared format, without duplicate handlers.

    Returns:
        the handler added to the root logger (it replaces one added by an earlier call).
    """
    return configure_root_logging(verbose, logfile)


def install_excepthooks() -> None:
    """Log unhandled exceptions (main and other threads) as critical."""

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        logger.critical("Unhandled exception:\n%s", "".join(traceback.format_exception(exc_type, exc, tb)))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        logger.critical("Unhandled exception in thread %s:\n%s", name, text)

    sys.excepthook = hook
    threading.excepthook = thread_hook


# ----------------------------------------------------------------------------------- server


class SimulationServer:
    """One simulation: notifier, experiment configuration, script runner and lifecycle.

    Args:
        sim_dir: the simulation directory (the process has changed into it).
        sim_id: the simulation id.
        script: the main script file name, relative to ``sim_dir``.
        config_file: the experiment configuration file name, relative to ``sim_dir``.
        mqtt: broker address and topic prefix (``hbp_nrp_commons.settings.MqttSettings``).
    """

    def __init__(self, sim_dir: str | Path, sim_id: str, script: str, config_file: str, mqtt: Any) -> None:
        self.sim_dir = Path(sim_dir).resolve()
        self.sim_id = str(sim_id)
        self.script = script
        self.config_file = config_file
        self.mqtt = mqtt
        self.notifier: MQTTNotifier | None = None
        self.config: ExperimentConfig | None = None
        self.runner: NRPScriptRunner | None = None
        self.lifecycle: Any = None
        self.exit_state: str | None = None
        self.done_event = threading.Event()
        self._initialized = False
        self._last_times = (0.0, 0.0, 0.0)

    # -- status ------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The simserver lifecycle state (``created`` before the lifecycle exists)."""
        lifecycle = self.lifecycle
        if lifecycle is not None:
            return str(lifecycle.state)
        return self.exit_state or "created"

    def status(self) -> dict[str, Any]:
        """The current status message; counters keep their last values at the end."""
        runner = self.runner
        if runner is not None:
            self._last_times = runner.times()
        elif self.config is not None and self._last_times == (0.0, 0.0, 0.0):
            self._last_times = (0.0, 0.0, self.config.max_timesteps * self.config.timestep)
        return status_payload(self.state, *self._last_times)

    # -- initialize ----------------------------------------------------------------------------

    def initialize(self) -> None:
        """Set up, in this order: notifier, configuration, script runner, lifecycle, status timer.

        Raises:
            Exception: any failure; the caller exits with code 1. Errors after the notifier is
                connected are published as ``Loading``.
        """
        from hbp_nrp_simserver.lifecycle import SimulationServerLifecycle

        notifier = MQTTNotifier(self.mqtt, self.sim_id, status_source=self.status)
        notifier.connect()
        self.notifier = notifier
        try:
            try:
                self.config = load_experiment_config(self.config_file)
            except Exception as exc:
                error = ScriptError(str(exc), ErrorType.LOADING, self.script)
                notifier.publish_error(error.relative_to(self.sim_dir))
                raise
            self.runner = NRPScriptRunner(
                self.sim_dir,
                self.script,
                self.sim_id,
                self.config,
                notifier,
                client_factory=self.create_client,
            )
            self.lifecycle = SimulationServerLifecycle(
                self.sim_id, self.mqtt, self.runner, notifier, done_event=self.done_event, connect=False
            )
            # subscribe only now: the retained init message may start initializing at once, and
            # the status published at that state change must find the lifecycle
            self.lifecycle.connect()
            notifier.start_status_timer()
        except Exception:
            if self.lifecycle is not None:
                _log_errors(self.lifecycle.shutdown, None)
            notifier.shutdown()
            self.notifier = None
            raise
        self._initialized = True

    def create_client(self) -> Any:
        """Build the in-process nrp-core client for this simulation's configuration (not yet initialized)."""
        assert self.config is not None
        args = nrp_core_args(self.config, self.sim_id, self.mqtt.address, self.mqtt.prefix)
        return nrp_core_client_factory(self.sim_dir, self.config_file, args)()

    # -- shutdown ----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop the simulation if still running, then release the notifier."""
        if not self._initialized:
            return
        notifier = self.notifier
        assert notifier is not None
        with notifier.task(SHUTDOWN_TASK):
            lifecycle = self.lifecycle
            if lifecycle is not None:
                if lifecycle.state not in ("failed", "stopped"):
                    try:
                        lifecycle.stopped()
                    except Exception:
                        logger.exception("Error while stopping the simulation")
                # also when the final state was reached in another thread, which may still be
                # stopping the script and shutting nrp-core down: the process exits after this
                if not self.done_event.wait(DONE_WAIT):
                    logger.error("The simulation lifecycle did not finish within %.0f s", DONE_WAIT)
            self.exit_state = str(lifecycle.state) if lifecycle is not None else self.exit_state
            notifier.publish_status()
            self.lifecycle = None
            self.runner = None
        try:
            notifier.shutdown()
        except Exception:
            logger.exception("Error while shutting the notifier down")
        self._initialized = False


def _log_errors(function: Any, default: Any) -> Any:
    try:
        return function()
    except Exception:
        logger.exception("Error in %s", getattr(function, "__qualname__", function))
        return default


# ----------------------------------------------------------------------------------- main flow


class ParentWatchdog(threading.Thread):
    """Sets ``terminate`` once the parent process has gone (``os.getppid()`` changed)."""

    def __init__(self, terminate: threading.Event, period: float = WATCHDOG_PERIOD) -> None:
        super().__init__(name="ParentWatchdog", daemon=True)
        self._terminate = terminate
        self._period = period
        self._parent = os.getppid()

    def run(self) -> None:
        while not self._terminate.wait(self._period):
            if os.getppid() != self._parent:
                logger.warning("Backend gone")
                self._terminate.set()
                return


def simulation_mqtt(settings: MqttSettings, sim_id: int | str) -> MqttSettings:
    """This simulation's MQTT identity: user ``[P/]nrp_simulation/<id>`` with the password the REST
    server put in ``NRP_MQTT_PASSWORD`` (its engine processes inherit it); anonymous without one."""
    from hbp_nrp_commons.mqtt_identity import PASSWORD_VARIABLE, simulation_user

    password = os.environ.get(PASSWORD_VARIABLE, "")
    if not password:
        return settings
    return replace(settings, username=simulation_user(settings.prefix, sim_id), password=password)


def run_server(server: SimulationServer) -> int:
    """Run an initialized server until its lifecycle ends or a signal arrives, then shut it down.

    SIGINT, SIGTERM or the death of the parent process start the shutdown. Returns the exit code:
    0, 2 when the shutdown failed, 3 when the simulation failed.
    """
    terminate = threading.Event()
    exit_code: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("Received '%s'", signum)
        terminate.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    ParentWatchdog(terminate).start()

    def shutdown_handler() -> None:
        terminate.wait()
        code = ServerProcessExitCodes.NO_ERROR
        try:
            server.shutdown()
        except Exception:
            logger.exception("Error during the shutdown of the Simulation Server")
            code = ServerProcessExitCodes.SHUTDOWN_ERROR
        else:
            if server.exit_state == "failed":
                code = ServerProcessExitCodes.RUNNING_ERROR
        exit_code.append(int(code))

    shutdown_thread = threading.Thread(target=shutdown_handler, name="SimServerShutdownHandler")
    shutdown_thread.start()
    try:
        while not server.done_event.wait(0.2):
            if not shutdown_thread.is_alive():
                break
        logger.info("Simulation lifecycle reached state '%s'", server.state)
        if server.notifier is not None:
            server.notifier.publish_status()
    except Exception:
        logger.exception("Error in the main loop of the Simulation Server")
    terminate.set()
    shutdown_thread.join()
    return exit_code[0] if exit_code else int(ServerProcessExitCodes.NO_ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the Simulation Server; returns the process exit code (:class:`ServerProcessExitCodes`)."""
    args = parse_args(argv)
    install_excepthooks()
    configure_logging(args.verbose, args.logfile)
    try:
        os.chdir(args.dir)
    except OSError:
        logger.exception("Cannot change into the simulation directory %s", args.dir)
        return int(ServerProcessExitCodes.INITIALIZATION_ERROR)
    logger.info("Simulation Server %s starting in %s (pid %d)", args.id, os.getcwd(), os.getpid())
    try:
        from hbp_nrp_commons.settings import load_settings

        settings = load_settings()
        server = SimulationServer(
            os.getcwd(), args.id, args.script, args.config, simulation_mqtt(settings.mqtt, args.id)
        )
        server.initialize()
    except Exception:
        logger.exception("Initialization of the Simulation Server failed")
        return int(ServerProcessExitCodes.INITIALIZATION_ERROR)
    code = run_server(server)
    logger.info("Simulation Server %s exits with code %d", args.id, code)
    return code
