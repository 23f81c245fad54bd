"""The ``python_json`` engine process.

Run by the loop as ``python -m nrp_core.engines.python_json.worker [<EngineProcStartParams>...]
--engine=<EngineName> --control-fd=<n>``; it serves the engine operations (:class:`EngineServer`) over the
control channel and exits when the channel reaches end of file.
"""

from __future__ import annotations

from typing import Any

from nrp_core.engines.channel import worker_main


def make_server() -> Any:
    """A fresh ``EngineServer`` for this process."""
    from nrp_core.engines.python_json.server_callbacks import EngineServer

    return EngineServer()


if __name__ == "__main__":
    raise SystemExit(worker_main(make_server))
