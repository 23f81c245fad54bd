"""The root-logger set-up shared by the REST server and the Simulation Server processes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from hbp_nrp_commons.timestamps import UtcFormatter

#: The log line of both servers: time (ISO 8601 UTC), thread, logger and level in fixed-width columns.
LOG_FORMAT = "%(asctime)s [%(threadName)-12.12s] [%(name)-12.12s] [%(levelname)s]  %(message)s"
#: The name of the root handler this module adds, by which a later call finds it.
HANDLER_NAME = "nrp-root"


def configure_root_logging(
    verbose: bool = False,
    logfile: str | Path | None = None,
    quiet: Iterable[str] = ("transitions",),
) -> logging.Handler:
    """Send the root logger to stdout (or ``logfile``) in :data:`LOG_FORMAT`, at INFO or DEBUG.

    Repeated calls add no handlers: the handler of an earlier call is removed and closed.

    Args:
        verbose: log at DEBUG instead of INFO.
        logfile: file to append to; stdout when ``None``.
        quiet: loggers lowered to ERROR.

    Returns:
        the handler added to the root logger.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == HANDLER_NAME:
            root.removeHandler(old)
            old.close()
    handler: logging.Handler = logging.FileHandler(logfile) if logfile else logging.StreamHandler(sys.stdout)
    handler.setFormatter(UtcFormatter(LOG_FORMAT))
    handler.set_name(HANDLER_NAME)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.ERROR)
    return handler
