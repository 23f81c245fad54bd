"""The ``py_sim`` engine process.

Run by the loop as ``python -m nrp_core.engines.py_sim.worker [<EngineProcStartParams>...]
--engine=<EngineName> --control-fd=<n>``. It serves the ``python_json`` operations; the user's
``Script`` derives from :class:`~nrp_core.engines.py_sim.PySimEngineScript`.
"""

from __future__ import annotations

from nrp_core.engines.channel import worker_main
from nrp_core.engines.py_sim.server import make_server

if __name__ == "__main__":
    raise SystemExit(worker_main(make_server))
