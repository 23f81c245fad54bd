"""The ``nrp`` object handed to ``main_script.py``.

``NrpCoreWrapper`` delegates to an nrp-core client (``nrp_core.NrpCore``) and adds what the
Simulation Server needs around each ``run_loop`` call: the pause point, stop requests, the step
budget and the time counters of the status message.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Protocol

from hbp_nrp_simserver.errors import NrpCoreRunError

logger = logging.getLogger(__name__)

TIMEOUT_MESSAGE = "The number of iteration requested will exceed the timeout"


class NRPSimulationTimeout(Exception):
    """The step budget (``SimulationTimeout`` / timestep) would be exceeded; scripts catch it to end."""


class NRPStopExecution(BaseException):
    """The simulation is being stopped.

    A ``BaseException``, so that ``except Exception:`` in a script does not swallow a stop request.
    """


class NrpCoreClient(Protocol):
    """The part of ``nrp_core.NrpCore`` (the nrp-client API) the Simulation Server uses."""

    def initialize(self) -> Any: ...

    def run_loop(self, num_iterations: int, json_data: Any = None) -> Any: ...

    def run_until_timeout(self) -> Any: ...

    def stop(self) -> None: ...

    def shutdown(self) -> None: ...

    def current_state(self) -> str: ...

    def set_json_datapack(self, datapack_name: str, engine_name: str, payload: Any) -> None: ...

    def set_proto_datapack(self, datapack_name: str, engine_name: str, payload: Any) -> None: ...

    @property
    def simulation_time_ns(self) -> int: ...


def max_timesteps(timeout_s: float, timestep_s: float) -> int:
    """The number of loop steps a simulation may run: ``floor(timeout / timestep + 1e-9)``, never negative.

    The ``1e-9`` keeps a timeout that is an exact multiple of the timestep from losing a step to
    floating-point rounding.
    """
    if timestep_s <= 0:
        raise ValueError(f"timestep must be positive, got {timestep_s}")
    return max(0, math.floor(float(timeout_s) / float(timestep_s) + 1e-9))


class SimulationControl:
    """The two events through which the lifecycle drives a running script.

    ``started`` is set while the script may advance (cleared = paused); ``stop_requested`` is set
    once and never cleared. Setting a stop also sets ``started`` so a paused script wakes up.
    """

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stop_requested = threading.Event()

    def start(self) -> None:
        self.started.set()

    def pause(self) -> None:
        self.started.clear()

    def request_stop(self) -> None:
        self.stop_requested.set()
        self.started.set()


class NrpCoreWrapper:
    """The ``nrp`` global of the main script.

    Args:
        client: the nrp-core client (``nrp_core.NrpCore`` or anything with the same methods).
        sim_id: the simulation id.
        timeout_s: ``SimulationTimeout`` in seconds.
        timestep_s: the loop timestep in seconds (the configuration's ``SimulationTimestep``).
        timestep_ns: the same timestep in integer nanoseconds, as nrp-core counts it; derived from
            ``timestep_s`` when omitted.
        control: the pause and stop events shared with the script runner.
    """

    def __init__(
        self,
        client: NrpCoreClient,
        sim_id: str,
        timeout_s: float,
        timestep_s: float,
        *,
        timestep_ns: int | None = None,
        control: SimulationControl | None = None,
    ) -> None:
        self._client = client
        self._sim_id = str(sim_id)
        self._timestep = float(timestep_s)
        self._timestep_ns = int(timestep_ns) if timestep_ns else round(self._timestep * 1e9)
        self._max_steps = max_timesteps(timeout_s, self._timestep)
        self._control = control if control is not None else SimulationControl()
        if control is None:
            self._control.start()
        self._steps = 0
        self._real_time = 0.0
        self._run_started: float | None = None
        self._lock = threading.Lock()

    # -- the script-facing API -------------------------------------------------------------

    def run_loop(self, num_iterations: int = 1, json_data: Any = None) -> Any:
        """Advance the simulation by ``num_iterations`` loop steps.

        Blocks while the simulation is paused.

        Args:
            num_iterations: number of loop steps (each one loop timestep long).
            json_data: ``{engine_name: {datapack_name: payload}}`` sent to the engines, passed
                unchanged to the client.

        Returns:
            the client's result, the tuple ``(done_flag, trajectory)``.

        Raises:
            NRPStopExecution: the simulation is being stopped (before or during the call).
            NRPSimulationTimeout: the call would exceed the step budget; no step is run.
            NrpCoreRunError: an engine or a function failed (a ``RuntimeError``).
            ValueError: ``num_iterations`` is less than 1 (nrp-core runs 0 iterations until stopped,
                past the step budget; a negative count would lower the step counter).
        """
        if num_iterations < 1:
            raise ValueError(f"run_loop() needs at least one iteration, got {num_iterations}")
        self._control.started.wait()
        if self._control.stop_requested.is_set():
            raise NRPStopExecution("The simulation is being stopped")
        if self._steps + num_iterations > self._max_steps:
            raise NRPSimulationTimeout(TIMEOUT_MESSAGE)
        with self._lock:
            self._run_started = time.monotonic()
        try:
            result = self._client.run_loop(num_iterations, json_data)
        except RuntimeError as exc:
            if self._control.stop_requested.is_set():
                self._sync_steps_with_client()
                raise NRPStopExecution("The simulation is being stopped") from exc
            raise NrpCoreRunError.from_client_error(exc) from exc
        finally:
            with self._lock:
                self._real_time += time.monotonic() - (self._run_started or time.monotonic())
                self._run_started = None
        if self._control.stop_requested.is_set():
            self._sync_steps_with_client()
            raise NRPStopExecution("The simulation is being stopped")
        self._steps += num_iterations
        return result

    def run_until_timeout(self) -> Any:
        """nrp-core's ``run_until_timeout()``: run until the done flag or the loop's timeout.

        The loop's timeout is ``SimulationTimeout`` (from time 0) for the FTI loop and
        ``EventLoop.Timeout`` of wall time (0: until stopped) for the Event Loop. Blocks while paused;
        afterwards the step counter follows the client's time.

        Returns:
            nrp-core's ``(done, timeout_flag, trajectory)``.

        Raises:
            NRPStopExecution: the simulation is being stopped (before or during the call).
            NRPSimulationTimeout: the step budget is used up already; nothing runs.
            NrpCoreRunError: an engine, function or node failed.
        """
        self._control.started.wait()
        if self._control.stop_requested.is_set():
            raise NRPStopExecution("The simulation is being stopped")
        if self._steps >= self._max_steps:
            raise NRPSimulationTimeout(TIMEOUT_MESSAGE)
        with self._lock:
            self._run_started = time.monotonic()
        try:
            result = self._client.run_until_timeout()
        except RuntimeError as exc:
            self._sync_steps_with_client()
            if self._control.stop_requested.is_set():
                raise NRPStopExecution("The simulation is being stopped") from exc
            raise NrpCoreRunError.from_client_error(exc) from exc
        finally:
            with self._lock:
                self._real_time += time.monotonic() - (self._run_started or time.monotonic())
                self._run_started = None
        self._sync_steps_with_client()
        if self._control.stop_requested.is_set():
            raise NRPStopExecution("The simulation is being stopped")
        return result

    def set_json_datapack(self, datapack_name: str, engine_name: str, payload: Any) -> None:
        """Buffer a JSON datapack for an engine; sent at the next ``run_loop``."""
        self._client.set_json_datapack(datapack_name, engine_name, payload)

    def set_proto_datapack(self, datapack_name: str, engine_name: str, payload: Any) -> None:
        """Buffer a protobuf datapack for an engine; sent at the next ``run_loop``."""
        self._client.set_proto_datapack(datapack_name, engine_name, payload)

    def current_state(self) -> str:
        """The nrp-core client's state (``Created``, ``Initialized``, ``Running``, ...)."""
        return self._client.current_state()

    @property
    def simulation_time(self) -> float:
        """Simulated time in seconds: steps executed x timestep."""
        return self._steps * self._timestep

    @property
    def simulation_time_remaining(self) -> float:
        """Simulation time left in the budget, in seconds."""
        return max(0, self._max_steps - self._steps) * self._timestep

    @property
    def real_time(self) -> float:
        """Wall-clock seconds spent inside ``run_loop`` calls (including a call in progress)."""
        with self._lock:
            running = time.monotonic() - self._run_started if self._run_started is not None else 0.0
            return self._real_time + running

    @property
    def max_timesteps(self) -> int:
        """The step budget."""
        return self._max_steps

    @property
    def steps(self) -> int:
        """Loop steps executed so far."""
        return self._steps

    @property
    def timestep(self) -> float:
        """The loop timestep in seconds."""
        return self._timestep

    @property
    def is_running(self) -> bool:
        """True only while a delegated ``run_loop`` call is in progress."""
        with self._lock:
            return self._run_started is not None

    @property
    def sim_id(self) -> str:
        """The simulation id."""
        return self._sim_id

    def stop(self) -> None:
        """Not available to scripts: the simulation is stopped through the REST API."""
        raise NotImplementedError("stop() is not available")

    def reset(self) -> None:
        """Not available to scripts."""
        raise NotImplementedError("reset() is not available")

    def shutdown(self) -> None:
        """Not available to scripts: the Simulation Server shuts nrp-core down."""
        raise NotImplementedError("shutdown() is not available")

    def initialize(self) -> None:
        """Not available to scripts: the Simulation Server initializes nrp-core."""
        raise NotImplementedError("initialize() is not available")

    # -- used by the Simulation Server ---------------------------------------------------------

    def interrupt(self) -> None:
        """End a running ``run_loop`` after its current step (the stop has to be requested first)."""
        if self.is_running:
            try:
                self._client.stop()
            except Exception:  # the loop may just have ended; the stop event does the rest
                logger.debug("nrp-core client stop() failed", exc_info=True)

    def _sync_steps_with_client(self) -> None:
        try:
            self._steps = int(self._client.simulation_time_ns) // self._timestep_ns
        except Exception:
            logger.debug("could not read the client's simulation time", exc_info=True)
