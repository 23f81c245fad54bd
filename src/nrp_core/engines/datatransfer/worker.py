"""The ``datatransfer_grpc_engine`` stand-in's engine process.

Run by the loop as ``python -m nrp_core.engines.datatransfer.worker [<EngineProcStartParams>...]
--engine=<EngineName> --control-fd=<n>``.
"""

from __future__ import annotations

from nrp_core.engines.channel import worker_main
from nrp_core.engines.datatransfer.server import make_server

if __name__ == "__main__":
    raise SystemExit(worker_main(make_server))
