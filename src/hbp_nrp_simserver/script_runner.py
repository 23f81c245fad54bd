"""Runs ``main_script.py`` in thread ``MainScriptThread``.

``NRPScriptRunner`` loads and compiles the script, builds the nrp-core client and the ``nrp``
object, and turns the ways a script can end into ``runtime_error`` reports. It needs no broker:
errors go to a ``Notifier``, which is the MQTT one in the Simulation Server and the null one in
``nrp run``.
"""

from __future__ import annotations

import builtins
import linecache
import logging
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import CodeType
from typing import Any, NoReturn

from hbp_nrp_commons.runtime_error_file import write_runtime_error
from hbp_nrp_simserver.config import ExperimentConfig
from hbp_nrp_simserver.errors import ErrorType, NrpCoreRunError, ScriptError, ScriptLoadError
from hbp_nrp_simserver.notifier import Notifier
from hbp_nrp_simserver.wrapper import (
    TIMEOUT_MESSAGE,
    NrpCoreClient,
    NrpCoreWrapper,
    NRPSimulationTimeout,
    NRPStopExecution,
    SimulationControl,
)

logger = logging.getLogger(__name__)

SCRIPT_LOGGER_PREFIX = "hbp_nrp_simserver.server.nrp_script_runner"
SCRIPT_THREAD_NAME = "MainScriptThread"
STOP_JOIN_TIMEOUT = 20.0
# the original's nrp-core server address; the in-process client ignores it
NRP_CORE_ADDRESS = "localhost:5345"

ClientFactory = Callable[[], NrpCoreClient]
FinishedCallback = Callable[[ScriptError | None], None]


def nrp_core_client_factory(experiment_dir: str | Path, config_file: str, args: str = "") -> ClientFactory:
    """A factory of in-process nrp-core clients (``nrp_core.NrpCore``) for one experiment.

    Args:
        experiment_dir: the experiment (simulation) directory; engines run there.
        config_file: the configuration file, relative to ``experiment_dir``.
        args: the ``NRPCoreSim``-style argument string (``-o`` overrides).
    """

    def create() -> NrpCoreClient:
        from nrp_core import NrpCore

        logger.info("Creating the nrp-core client for %s with args %r", config_file, args)
        return NrpCore(
            NRP_CORE_ADDRESS, experiment_folder=str(experiment_dir), config_file=config_file, args=args
        )

    return create


def create_script_logger(sim_dir: Path, script_name: str, sim_id: str) -> logging.Logger:
    """The script's ``file_logger`` global, writing to ``<sim_dir>/<script base>_<id>.log``.

    Calling it again for the same script replaces the previous file handler.
    """
    base = Path(script_name).stem
    file_name = f"{base}_{sim_id}.log"
    script_logger = logging.getLogger(f"{SCRIPT_LOGGER_PREFIX}.{base}")
    close_handlers(script_logger)
    handler = logging.FileHandler(Path(sim_dir) / file_name, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    script_logger.addHandler(handler)
    script_logger.setLevel(logging.DEBUG)
    script_logger.propagate = False
    script_logger.info("Writing logs to '%s'", file_name)
    return script_logger


def close_handlers(script_logger: logging.Logger) -> None:
    """Remove and close every handler of ``script_logger`` (its log file is released)."""
    for handler in list(script_logger.handlers):
        script_logger.removeHandler(handler)
        handler.close()


class NRPScriptRunner:
    """Loads the main script and the nrp-core client, then runs the script in its own thread.

    Args:
        sim_dir: the simulation directory (holds the script and receives the script log).
        script_name: the script file name, relative to ``sim_dir``.
        sim_id: the simulation id.
        config: the experiment configuration (step budget and timestep).
        notifier: where errors are reported; the null ``Notifier`` when omitted.
        client_factory: builds the nrp-core client (not yet initialized); called by ``initialize``.
    """

    def __init__(
        self,
        sim_dir: str | Path,
        script_name: str,
        sim_id: str,
        config: ExperimentConfig,
        notifier: Notifier | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.sim_dir = Path(sim_dir).resolve()
        self.script_name = script_name
        self.script_path = self.sim_dir / script_name
        self.sim_id = str(sim_id)
        self.config = config
        self.notifier = notifier if notifier is not None else Notifier(self.sim_id)
        self._client_factory = client_factory
        self.control = SimulationControl()
        self.file_logger = create_script_logger(self.sim_dir, script_name, self.sim_id)
        self.client: Any = None
        self.wrapper: NrpCoreWrapper | None = None
        self.error: ScriptError | None = None
        self._code: CodeType | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return self.wrapper is not None

    def initialize(self) -> None:
        """Read and compile the script, then build and initialize the nrp-core client.

        Does nothing when already initialized.

        Raises:
            ScriptLoadError: reading (``Loading``), compiling (``Compile``) or the client
                (``Loading``) failed; the error has been published already.
        """
        if self.initialized:
            return
        self.load_script()
        self.initialize_client()

    def load_script(self) -> CodeType:
        """Read and compile the script with its real file name, so tracebacks name the script's lines."""
        try:
            source = self.script_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self._fail_loading(
                ScriptError(f"Error loading main script : {exc}", ErrorType.LOADING, self.script_name)
            )
        filename = str(self.script_path)
        try:
            code = compile(source, filename, "exec")
        except SyntaxError as exc:
            self._fail_loading(
                ScriptError(
                    f"SyntaxError in (Line {exc.lineno}): {exc}",
                    ErrorType.COMPILE,
                    self.script_name,
                    exc.lineno if exc.lineno is not None else -1,
                    exc.offset if exc.offset is not None else -1,
                    (exc.text or "").strip(),
                    traceback.format_exc(),
                )
            )
        # tracebacks show the lines that were compiled, even if the file changes afterwards
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        self._code = code
        return code

    def initialize_client(self) -> None:
        """Build the nrp-core client, call its ``initialize()`` and create the ``nrp`` object."""
        client = None
        try:
            if self._client_factory is None:
                raise RuntimeError("no nrp-core client factory was given")
            client = self._client_factory()
            client.initialize()
        except Exception as exc:
            logger.exception("nrp-core initialization failed")
            if client is not None:
                _quiet_shutdown(client)
            self._fail_loading(
                ScriptError(
                    f"Error initializing nrp_core client. Check logs. Simulation ID {self.sim_id}: {exc}",
                    ErrorType.LOADING,
                    self.script_name,
                    traceback=traceback.format_exc(),
                )
            )
        self.client = client
        self.wrapper = NrpCoreWrapper(
            client,
            self.sim_id,
            self.config.timeout,
            self.config.timestep,
            timestep_ns=self.config.timestep_ns,
            control=self.control,
        )

    def _fail_loading(self, error: ScriptError) -> NoReturn:
        error = error.relative_to(self.sim_dir)
        self.error = error
        self.notifier.publish_error(error)
        raise ScriptLoadError(error)

    # -- control -------------------------------------------------------------------------------

    @property
    def is_alive(self) -> bool:
        """True while the script thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def stop_requested(self) -> bool:
        return self.control.stop_requested.is_set()

    def start(self, on_finished: FinishedCallback | None = None) -> None:
        """Let the script advance; start ``MainScriptThread`` if no script thread is alive.

        Args:
            on_finished: called in the script thread when the script ends, in every case, with
                the reported error or None.

        Raises:
            RuntimeError: ``initialize`` has not succeeded.
        """
        if self._code is None or self.wrapper is None:
            raise RuntimeError("The script runner is not initialized")
        self.control.start()
        with self._lock:
            if self.is_alive:
                logger.info("Another script is running")
                return
            self._thread = threading.Thread(
                target=self._run_script, args=(on_finished,), name=SCRIPT_THREAD_NAME, daemon=True
            )
            self._thread.start()

    def pause(self) -> None:
        """Hold the script at its next ``nrp.run_loop`` call."""
        self.control.pause()

    def stop(self, timeout: float = STOP_JOIN_TIMEOUT) -> bool:
        """Request a stop, end a running ``run_loop`` after its current step, join the script thread.

        Returns:
            True if no script thread is left running.
        """
        self.control.request_stop()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        deadline = time.monotonic() + timeout
        while thread.is_alive() and time.monotonic() < deadline:
            if self.wrapper is not None:
                self.wrapper.interrupt()
            thread.join(0.02)
        if thread.is_alive():
            logger.warning("The main script thread did not end within %.0f s", timeout)
            return False
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the script thread to end; True if it has (or never started)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def shutdown(self) -> None:
        """Stop the script, shut the nrp-core client down and close the script log; errors are logged."""
        self.stop()
        client, self.client = self.client, None
        if client is not None:
            try:
                client.shutdown()
            except Exception:
                logger.exception("Error while shutting nrp-core down")
        close_handlers(self.file_logger)

    def times(self) -> tuple[float, float, float]:
        """``(real_time, simulation_time, simulation_time_left)`` in seconds, for the status message."""
        wrapper = self.wrapper
        if wrapper is None:
            return 0.0, 0.0, self.config.max_timesteps * self.config.timestep
        return wrapper.real_time, wrapper.simulation_time, wrapper.simulation_time_remaining

    # -- the script thread ---------------------------------------------------------------------

    def script_globals(self) -> dict[str, Any]:
        """A fresh globals dictionary: the script runs as ``__main__`` with ``nrp`` and the names below."""
        return {
            "__name__": "__main__",
            "__file__": self.script_name,
            "__builtins__": builtins,
            "nrp": self.wrapper,
            "NRPSimulationTimeout": NRPSimulationTimeout,
            "NRPStopExecution": NRPStopExecution,
            "file_logger": self.file_logger,
            "logging": logging,
        }

    def _run_script(self, on_finished: FinishedCallback | None) -> None:
        error: ScriptError | None = None
        try:
            assert self._code is not None
            exec(self._code, self.script_globals())  # noqa: S102 - running the user's script is the point
            logger.info("Main script finished")
        except NRPStopExecution:
            logger.info("Exiting main script thread")
        except SystemExit as exc:
            logger.info("Main script called exit(%s)", exc.code)
            error = self.describe_exit(exc)
        except BaseException as exc:  # every other way out is reported, then the thread ends
            error = self.describe_error(exc).relative_to(self.sim_dir)
            logger.error("Main script error:\n%s", error.traceback)
        if error is not None:
            self.error = error
            try:  # before publishing: the REST server reads it when the message arrives
                write_runtime_error(self.sim_dir, error.report(self.sim_id))
            except OSError:
                logger.exception("Could not write the runtime error report")
            self.notifier.publish_error(error)
        if on_finished is not None:
            try:
                on_finished(error)
            except Exception:
                logger.exception("Error in the script completion callback")

    def describe_exit(self, exc: SystemExit) -> ScriptError | None:
        """``sys.exit(n)``: ``None`` for n = 0 or ``None`` (a normal end), else an error with its code.

        ``sys.exit("text")`` is code 1 with the text as message, as for the Python interpreter.
        """
        code = exc.code
        if code is None or code == 0:
            return None
        if isinstance(code, int):
            msg, exit_code = f"The main script called sys.exit({code})", code
        else:
            msg, exit_code = f"The main script called sys.exit: {code}", 1
        line, offset, line_text = self._script_location(exc)
        text = "".join(traceback.format_exception(exc))
        error = ScriptError(
            msg, ErrorType.RUNTIME, self.script_name, line, offset, line_text, text, exit_code
        )
        return error.relative_to(self.sim_dir)

    def describe_error(self, exc: BaseException) -> ScriptError:
        """Turn an exception that ended the script into its ``runtime_error`` report (type, file, line)."""
        text = "".join(traceback.format_exception(exc))
        if isinstance(exc, NRPSimulationTimeout):
            return ScriptError(TIMEOUT_MESSAGE, ErrorType.SIM_TIMEOUT, self.script_name, traceback=text)
        line, offset, line_text = self._script_location(exc)
        if isinstance(exc, NrpCoreRunError):
            full = text + ("\n" + exc.client_traceback if exc.client_traceback else "")
            return ScriptError(exc.detail, ErrorType.RUNTIME, self.script_name, line, offset, line_text, full)
        if isinstance(exc, AttributeError | NameError | SyntaxError):
            msg = f"{type(exc).__name__} in main script (Line {line}): {exc}"
            return ScriptError(msg, ErrorType.COMPILE, self.script_name, line, offset, line_text, text)
        return ScriptError(str(exc), ErrorType.RUNTIME, self.script_name, line, offset, line_text, text)

    def _script_location(self, exc: BaseException) -> tuple[int, int, str]:
        """Line, offset and text of the innermost traceback frame that belongs to the script."""
        filename = str(self.script_path)
        if isinstance(exc, SyntaxError) and exc.filename == filename and exc.lineno is not None:
            return exc.lineno, exc.offset if exc.offset is not None else -1, (exc.text or "").strip()
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename == filename and frame.lineno is not None:
                offset = frame.colno + 1 if frame.colno is not None else -1
                return frame.lineno, offset, (frame.line or "").strip()
        return -1, -1, ""


def _quiet_shutdown(client: Any) -> None:
    try:
        client.shutdown()
    except Exception:
        logger.debug("shutdown of a client that failed to initialize also failed", exc_info=True)
