"""One line per simulation event, for people watching the REST server's output (``nrp up``).

The REST server logs each event (launched, started, paused, completed, stopped, failed, an error
the Simulation Server reported, logs uploaded or spooled) on the ``nrp.events`` logger, in the log
format every server uses (:data:`hbp_nrp_commons.log_setup.LOG_FORMAT`). :func:`event_message`
recognises such a line in the server's output and returns the message, which ``nrp up`` prints.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

EVENT_LOGGER = "nrp.events"
MESSAGE_LIMIT = 300

events = logging.getLogger(EVENT_LOGGER)

# LOG_FORMAT: "... [%(name)-12.12s] [%(levelname)s]  %(message)s"
_EVENT_LINE = re.compile(r"\[" + re.escape(EVENT_LOGGER[:12]) + r" *\] \[[A-Z]+\]  (?P<message>.*?)\s*$")


def event_message(line: str) -> str | None:
    """The message of an ``nrp.events`` log line; ``None`` for any other line."""
    match = _EVENT_LINE.search(line)
    return match.group("message") if match else None


def one_line(text: object, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` with its whitespace (newlines too) collapsed, cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def state_changed(sim_id: int, source: str, target: str, experiment_id: str, owner: str, error: Any) -> None:
    """Log a lifecycle change of simulation ``sim_id``; ``error`` is its REST ``error`` (or ``None``).

    A launch that fails (``created`` -> ``failed``) is left to :func:`launch_failed`, which knows why.
    """
    if source == target:
        return
    if target == "paused" and source == "created":
        events.info("simulation %s launched: experiment %s, owner %s (paused)", sim_id, experiment_id, owner)
    elif target == "failed":
        if source != "created":
            msg = error.get("msg") if isinstance(error, dict) else None
            events.warning("simulation %s failed%s", sim_id, f": {one_line(msg)}" if msg else "")
    else:
        events.info("simulation %s %s", sim_id, target)


def runtime_error(sim_id: int, error: dict[str, Any]) -> None:
    """Log a ``runtime_error`` the Simulation Server reported (a script error ends in ``completed``)."""
    kind = f" ({error['error_type']})" if error.get("error_type") else ""
    events.warning("simulation %s error%s: %s", sim_id, kind, one_line(error.get("msg")))


def launch_failed(sim_id: int, experiment_id: str, message: str) -> None:
    """Log a launch of ``experiment_id`` that ended in ``failed``."""
    events.warning("simulation %s failed to launch %s: %s", sim_id, experiment_id, one_line(message))


def logs_uploaded(sim_id: int, experiment_id: str, zip_name: str, spooled: bool = False) -> None:
    """Log a log archive storage accepted, into the folder of ``experiment_id``."""
    what = "spooled logs" if spooled else "logs"
    events.info("simulation %s %s uploaded to storage: %s/%s", sim_id, what, experiment_id, zip_name)


def logs_spooled(sim_id: int, path: Path, reason: object, retry_interval: float) -> None:
    """Log a log archive kept at ``path`` because storage did not take it."""
    events.warning(
        "simulation %s logs spooled to %s (storage: %s); retried every %g s and at start",
        sim_id,
        path,
        one_line(reason, 120),
        retry_interval,
    )


def logs_refused(sim_id: int, path: Path, reason: object) -> None:
    """Log a log archive storage refused for good, kept at ``path`` (never retried)."""
    events.warning(
        "simulation %s logs refused by storage (%s); kept at %s, not retried",
        sim_id,
        one_line(reason, 160),
        path,
    )
