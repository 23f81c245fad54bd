"""``/simulation/<id>/state``: read the lifecycle state, request a transition."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from hbp_nrp_backend.api.common import caller, json_body, manager
from hbp_nrp_backend.api.schemas import ApiErrorSchema, StateRequestSchema, StateSchema, load_body

blp = Blueprint("state", __name__, description="Lifecycle state of a simulation")

_ERRORS = {
    code: {"description": text, "content": {"application/json": {"schema": ApiErrorSchema}}}
    for code, text in (
        ("401", "no valid token"),
        ("403", "not allowed"),
        ("404", "unknown simulation"),
    )
}


@blp.route("/simulation/<int:sim_id>/state")
class SimulationState(MethodView):
    @blp.doc(responses=_ERRORS)
    @blp.response(200, StateSchema)
    def get(self, sim_id: int) -> dict[str, Any]:
        """The backend lifecycle state, ``ready`` and the last ``error``; never waits for a transition."""
        sims = manager()
        sim = sims.find(sim_id)
        sims.check_view(caller(), sim)
        return sim.state_representation()

    @blp.doc(
        requestBody={"required": True, "content": {"application/json": {"schema": StateRequestSchema}}},
        responses={**_ERRORS, "400": {"description": "invalid transition"}},
    )
    @blp.response(200, StateSchema)
    def put(self, sim_id: int) -> dict[str, Any]:
        """Request ``started``, ``paused`` or ``stopped``; a stop answers once cleanup has ended."""
        sims = manager()
        sim = sims.find(sim_id)
        user = caller()
        sims.check_modify(user, sim)
        sim.reject_if_final()
        body = load_body(StateRequestSchema(), json_body())
        return sims.request_state(sim, body["state"])
