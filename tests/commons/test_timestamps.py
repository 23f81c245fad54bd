"""Every timestamp is ISO 8601 in UTC, written with ``Z``: REST fields, log lines, file names."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from hbp_nrp_commons.timestamps import UtcFormatter, file_stamp, iso_utc


def test_forms() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000000Z"
    assert iso_utc(1.5, "milliseconds") == "1970-01-01T00:00:01.500Z"
    assert file_stamp(86399) == "19700101T235959Z"
    assert iso_utc().endswith("Z") and file_stamp().endswith("Z")


def test_log_lines_are_utc() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.created = 0.25
    assert UtcFormatter("%(asctime)s %(message)s").format(record) == "1970-01-01T00:00:00.250Z hello"


def test_utc_whatever_the_local_zone() -> None:
    code = (
        "from hbp_nrp_backend.registry import creation_timestamp\n"
        "from hbp_nrp_backend.logs import log_zip_name\n"
        "print(creation_timestamp()); print(log_zip_name(3, 0))\n"
    )
    env = {**os.environ, "TZ": "Pacific/Kiritimati"}  # UTC+14: a local time would show
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    created, zip_name = out.stdout.split()
    assert created.endswith("Z") and "+" not in created, out.stderr
    assert zip_name == "19700101T000000Z_simulation_3.log.zip"
