"""Requested transitions of a running simulation: ``PUT /simulation/<id>/state`` and the server's
own stops.

:func:`request_state` fires a user's ``started``, ``paused`` or ``stopped`` and turns the
lifecycle's refusals into the 400 answers of the original backend; a second ``stopped`` while
another stop is in progress waits for that stop (:func:`wait_for_cleanup`) and answers with its
final state. :func:`stop_quietly` is the stop of the watchdog, of an unexpected process exit and
of the server's shutdown: a refusal is only logged.
"""

from __future__ import annotations

import logging
from typing import Any

from hbp_nrp_backend.config import BackendConfig
from hbp_nrp_backend.errors import ApiError, TransitionError
from hbp_nrp_backend.lifecycle import InvalidTransitionError, LifecycleBusyError
from hbp_nrp_backend.registry import FINAL_STATES
from hbp_nrp_backend.simserver_process import KILL_WAIT
from hbp_nrp_backend.simulation import FINALIZED_MESSAGE, REQUESTABLE_STATES, Simulation
from hbp_nrp_commons.lifecycle import REST_TARGETS

logger = logging.getLogger(__name__)


def _targets(state: str) -> str:
    return ", ".join(REST_TARGETS.get(state, ()))


def request_state(sim: Simulation, requested: object, config: BackendConfig) -> dict[str, Any]:
    """``PUT /simulation/<id>/state`` after the 404/401/403/final checks; 400 for an illegal state.

    Args:
        sim: the simulation.
        requested: the body's ``state`` as sent (any JSON value; only the requestable states pass).
        config: the backend configuration (how long a second stop waits for the first).

    Returns:
        the simulation's state representation once the transition has ended.
    """
    current = sim.state
    if not isinstance(requested, str) or requested not in REQUESTABLE_STATES:
        raise TransitionError(
            f"Invalid state requested: ({requested}). Current state: '{current}'; "
            f"allowed: {_targets(current)}"
        )
    lifecycle = sim.lifecycle
    if lifecycle is None:
        raise TransitionError(FINALIZED_MESSAGE)
    try:
        lifecycle.command(requested)
    except LifecycleBusyError as exc:
        if requested == "stopped" and wait_for_cleanup(sim, config):
            # Another stop (the watchdog's, a second click) got there first: answer as it ends.
            return sim.state_representation()
        raise TransitionError(f"The state transition is invalid ({exc})") from exc
    except InvalidTransitionError as exc:
        current = getattr(exc, "current", None) or sim.state
        if current in FINAL_STATES:
            raise TransitionError(FINALIZED_MESSAGE) from exc
        raise TransitionError(
            f"The state transition is invalid ('{current}' -> '{requested}'). "
            f"Allowed from '{current}': {_targets(current)}"
        ) from exc
    except ApiError:
        raise
    except Exception as exc:
        raise ApiError(f"Internal server error: {exc}", 500, "General error") from exc
    return sim.state_representation()


def wait_for_cleanup(sim: Simulation, config: BackendConfig) -> bool:
    """Wait for a stop or failure in progress to end; True once ``sim`` is final and cleaned."""
    bound = config.stop_grace + KILL_WAIT + config.settings.storage_timeout + 5
    lifecycle = sim.lifecycle
    # ``done_event`` follows the state change, which follows the cleanup.
    return lifecycle is not None and lifecycle.done_event.wait(bound) and sim.state in FINAL_STATES


def stop_quietly(sim: Simulation, reason: str) -> None:
    """Stop ``sim`` if it still runs; a refused stop is only logged (watchdog, unexpected exits)."""
    try:
        if sim.lifecycle is not None and sim.state not in FINAL_STATES:
            logger.info("Stopping simulation %s (%s)", sim.id, reason)
            sim.lifecycle.command("stopped")
    except Exception as exc:
        logger.info("Simulation %s: stop (%s) not applied: %s", sim.id, reason, exc)
