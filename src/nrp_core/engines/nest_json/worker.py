"""The ``nest_json`` engine process.

Run by the loop as ``python -m nrp_core.engines.nest_json.worker [<EngineProcStartParams>...]
--engine=<EngineName> --control-fd=<n>``; NEST is imported and driven in this process.
"""

from __future__ import annotations

from nrp_core.engines.channel import worker_main
from nrp_core.engines.nest_json.server import make_server

if __name__ == "__main__":
    raise SystemExit(worker_main(make_server))
