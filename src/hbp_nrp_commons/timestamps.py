"""Timestamps: ISO 8601, always UTC, always written with ``Z``.

REST fields and log lines use the extended form (``2026-12-05T15:52:28.123456Z``); file names the
basic form (``20261205T155228Z``), which sorts by time and has no ``:`` (not allowed on every file
system).
"""

from __future__ import annotations

import datetime
import logging
import time

UTC = datetime.UTC


def iso_utc(when: float | None = None, timespec: str = "microseconds") -> str:
    """``when`` (seconds since the epoch, now when ``None``) as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``."""
    moment = datetime.datetime.now(UTC) if when is None else datetime.datetime.fromtimestamp(when, UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def file_stamp(when: float | None = None) -> str:
    """``when`` (now when ``None``) for file names: ``YYYYMMDDTHHMMSSZ`` (ISO 8601 basic form)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))


class UtcFormatter(logging.Formatter):
    """A log formatter whose ``%(asctime)s`` is ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return iso_utc(record.created, "milliseconds")
