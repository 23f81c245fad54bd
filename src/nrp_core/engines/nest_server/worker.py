"""The ``nest_server`` engine process.

Run by the loop as ``python -m nrp_core.engines.nest_server.worker [<EngineProcStartParams>...]
--engine=<EngineName> --control-fd=<n>``; it serves the engine operations by driving NEST Server.
"""

from __future__ import annotations

from nrp_core.engines.channel import worker_main
from nrp_core.engines.nest_server.server import make_server

if __name__ == "__main__":
    raise SystemExit(worker_main(make_server))
