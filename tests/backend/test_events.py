"""The one-line simulation events of the REST server, as ``nrp up`` finds them in its output."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from hbp_nrp_backend import events
from hbp_nrp_commons.log_setup import LOG_FORMAT


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """What the ``nrp.events`` logger writes, in the servers' log format."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger(events.EVENT_LOGGER)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(previous)


def messages(output: io.StringIO) -> list[str | None]:
    return [events.event_message(line) for line in output.getvalue().splitlines()]


def test_event_lines_are_found_in_the_log_format(output: io.StringIO) -> None:
    events.state_changed(3, "created", "paused", "tf_exchange", "nrpuser", None)
    events.state_changed(3, "paused", "started", "tf_exchange", "nrpuser", None)
    events.state_changed(3, "started", "failed", "tf_exchange", "nrpuser", {"msg": "engine\ncrashed"})
    events.logs_spooled(3, Path("/spool/x.log.zip"), ConnectionError("refused"), 30)
    assert messages(output) == [
        "simulation 3 launched: experiment tf_exchange, owner nrpuser (paused)",
        "simulation 3 started",
        "simulation 3 failed: engine crashed",
        "simulation 3 logs spooled to /spool/x.log.zip (storage: refused); retried every 30 s and at start",
    ]


def test_other_log_lines_are_not_events() -> None:
    record = logging.LogRecord(
        "hbp_nrp_backend.simulations", logging.INFO, "", 0, "simulation 1 started", (), None
    )
    assert events.event_message(logging.Formatter(LOG_FORMAT).format(record)) is None
    assert events.event_message("Listening on http://127.0.0.1:8090") is None


def test_a_failed_launch_is_reported_once_with_its_reason(output: io.StringIO) -> None:
    events.state_changed(4, "created", "failed", "tf_exchange", "nrpuser", None)
    events.launch_failed(4, "tf_exchange", "Could not create symlink")
    assert messages(output) == ["simulation 4 failed to launch tf_exchange: Could not create symlink"]


def test_long_messages_are_cut() -> None:
    assert len(events.one_line("x" * 1000)) == events.MESSAGE_LIMIT
