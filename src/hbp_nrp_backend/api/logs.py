"""``GET /simulation/<id>/logs``: the log files of a running simulation, read from its directory
by its executor (on a Ray node, by its actor: :mod:`hbp_nrp_backend.live_logs`).

Once a simulation has ended its directory is gone: the logs are in the ``*_simulation_<id>.log.zip``
the stop uploaded to the experiment's storage folder (``nrp sim logs`` fetches it from there).
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from hbp_nrp_backend.api.common import caller, manager
from hbp_nrp_backend.api.schemas import ApiErrorSchema, SimulationLogsSchema
from hbp_nrp_backend.errors import ClientError, NotFound
from hbp_nrp_backend.live_logs import NoSuchLog
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
        name = request.args.get("name")
        files = None
        if sim.state not in FINAL_STATES and sim.sim_dir is not None:
            try:
                files = sims.executor.read_logs(sim, name, tail, offset)  # from wherever it runs
            except NoSuchLog:
                raise NotFound(f"Simulation {sim_id} has no log file {name!r}") from None
        if files is None:
            raise NotFound(
                f"Simulation {sim_id} is {sim.state}: its logs are in the *_simulation_{sim_id}.log.zip "
                f"file of experiment {sim.record.experiment_id} in storage"
            )
        return {"simulationID": sim_id, "state": sim.state, "files": files}
