"""The ``python_grpc`` engine process.

Run by the loop as ``python -m nrp_core.engines.python_grpc.worker [<EngineProcStartParams>...]
--engine=<EngineName> --control-fd=<n>``; it serves the engine operations
(:class:`~nrp_core.engines.python_grpc.server.GrpcEngineServer`) over the local control channel.
"""

from __future__ import annotations

from nrp_core.engines.channel import worker_main
from nrp_core.engines.python_grpc.server import make_server

if __name__ == "__main__":
    raise SystemExit(worker_main(make_server))
