"""``GET /simulation/<id>/logs``: the log files of a running simulation, read from its directory.

Once a simulation has ended its directory is gone: the logs are in the ``*_simulation_<id>.log.zip``
the stop uploaded to the experiment's storage folder (``nrp sim logs`` fetches it from there).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from hbp_nrp_backend.api.common import caller, manager
from hbp_nrp_backend.api.schemas import ApiErrorSchema, SimulationLogsSchema
from hbp_nrp_backend.errors import ClientError, NotFound
from hbp_nrp_backend.registry import FINAL_STATES

blp = Blueprint("logs", __name__, description="Log files of a running simulation")

DEFAULT_TAIL = 1_000_000
MAX_TAIL = 10_000_000

_ERRORS = {
    code: {"description": text, "content": {"application/json": {"schema": ApiErrorSchema}}}
    for code, text in (
        ("400", "invalid tail or offset"),
        ("401", "no valid token"),
        ("403", "not viewable"),
        ("404", "unknown simulation, or it has ended (its logs are in the experiment's log zip)"),
    )
}


def _number(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ClientError(f"{name} must be a number of bytes, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ClientError(f"{name} must be between {minimum} and {maximum} bytes, got {value}")
    return value


def read_log(path: Path, tail: int, offset: int = 0) -> dict[str, Any]:
    """``{"name", "size", "offset", "truncated", "content"}`` of one log file.

    ``content`` is the file from byte ``offset`` on, but at most its last ``tail`` bytes
    (``truncated`` then); ``offset`` in the answer is where ``content`` starts.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # never a link's target
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        size = handle.seek(0, 2)
        start = max(min(offset, size), size - tail)
        handle.seek(start)
        data = handle.read(size - start)
    return {
        "name": path.name,
        "size": size,
        "offset": start,
        "truncated": start > offset,
        "content": data.decode("utf-8", errors="replace"),
    }


def _is_regular(path: Path) -> bool:
    """A regular file, not a symlink: a ``*.log`` link is never followed."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def log_files(sim_dir: Path) -> list[Path]:
    """The top-level ``*.log`` files of a simulation directory: console log first, then by name."""
    found = sorted(p for p in sim_dir.iterdir() if p.name.endswith(".log") and _is_regular(p))
    return sorted(found, key=lambda p: not p.name.startswith("simulation_"))


@blp.route("/simulation/<int:sim_id>/logs")
class SimulationLogs(MethodView):
    @blp.doc(
        parameters=[
            {
                "name": "tail",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TAIL, "default": DEFAULT_TAIL},
                "description": "at most this many bytes from the end of each file",
            },
            {
                "name": "name",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "only this log file (a name the answer without it lists)",
            },
            {
                "name": "offset",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 0, "default": 0},
                "description": "each file from this byte on (to follow a log: the size of the last answer)",
            },
        ],
        responses=_ERRORS,
    )
    @blp.response(200, SimulationLogsSchema)
    def get(self, sim_id: int) -> dict[str, Any]:
        """The console log (``simulation_<id>.log``: the Simulation Server's output) and the other
        top-level ``*.log`` files (the script's ``file_logger``) of a running simulation."""
        sims = manager()
        sim = sims.find(sim_id)
        sims.check_view(caller(), sim)
        tail = _number("tail", DEFAULT_TAIL, 1, MAX_TAIL)
        offset = _number("offset", 0, 0, 2**62)
        sim_dir = sim.sim_dir
        if sim.state in FINAL_STATES or sim_dir is None or not sim_dir.is_dir():
            raise NotFound(
                f"Simulation {sim_id} is {sim.state}: its logs are in the *_simulation_{sim_id}.log.zip "
                f"file of experiment {sim.record.experiment_id} in storage"
            )
        paths = log_files(sim_dir)
        name = request.args.get("name")
        if name is not None:
            paths = [p for p in paths if p.name == name]
            if not paths:
                raise NotFound(f"Simulation {sim_id} has no log file {name!r}")
        files = []
        for path in paths:
            try:
                files.append(read_log(path, tail, offset))
            except OSError:
                continue  # removed by a stop in progress
        return {"simulationID": sim_id, "state": sim.state, "files": files}
