"""``python -m hbp_nrp_simserver``: the Simulation Server process."""

import atexit
import gc
import logging
import os
import sys

from hbp_nrp_simserver.server import main


def _exit_without_teardown(code: list[int]) -> None:
    """Leave at once after the other exit handlers, skipping the interpreter's module teardown.

    The backend answers a stop only once this process has ended, and tearing down the modules of
    the simserver, nrp_core and the experiment took 80 ms on an idle machine and up to 250 ms with
    a few simulations stopping at once: more than the whole shutdown sequence. Non-daemon threads
    have been joined and every later-registered exit handler has run by then. Here garbage is
    still collected (an unreachable file the script left open is flushed and closed, as at a normal
    exit), then logs and standard streams are flushed; only objects still reachable at exit are
    not finalized. Does nothing if ``main`` raised (normal exit with the traceback).
    """
    if not code:
        return
    gc.collect()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code[0])


if __name__ == "__main__":
    exit_code: list[int] = []
    # Registered before anything main() registers, so it runs after those handlers.
    atexit.register(_exit_without_teardown, exit_code)
    exit_code.append(main())
    sys.exit(exit_code[0])
