"""``/simulation`` and ``/simulation/<id>``: launch simulations, list them, show one."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from hbp_nrp_backend.api.common import caller, json_body, manager
from hbp_nrp_backend.api.schemas import ApiErrorSchema, SimulationRequestSchema, SimulationSchema, load_body
from hbp_nrp_backend.launch import LaunchRequest

blp = Blueprint("simulation", __name__, description="Simulations of this server")


def parse_launch_request(body: dict[str, Any]) -> LaunchRequest:
    """Check a ``POST /simulation`` body with :class:`SimulationRequestSchema` (the schema of the
    OpenAPI document) and turn it into a :class:`LaunchRequest`.

    Raises:
        ClientError: a required field is missing, a value has the wrong type, a file name is
            absolute or climbs out of the experiment.
    """
    data = load_body(SimulationRequestSchema(), body)
    return LaunchRequest(
        experiment_id=data["experimentID"],
        experiment_configuration=data["experimentConfiguration"],
        main_script=data["mainScript"],
        ctx_id=data["ctxId"],
    )


_ERRORS = {
    "400": {"description": "invalid request", "content": {"application/json": {"schema": ApiErrorSchema}}},
    "401": {"description": "no valid token", "content": {"application/json": {"schema": ApiErrorSchema}}},
}


@blp.route("/simulation")
class Simulations(MethodView):
    @blp.doc(
        requestBody={"required": True, "content": {"application/json": {"schema": SimulationRequestSchema}}},
        responses={
            **_ERRORS,
            "404": {"description": "experiment not found in storage"},
            "409": {"description": "maximum number of simulations reached"},
            "503": {"description": "MQTT broker or storage unreachable"},
        },
    )
    @blp.response(201, SimulationSchema, headers={"Location": {"schema": {"type": "string"}}})
    def post(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Create a simulation: clone the experiment, start its Simulation Server.

        Answers at once with state ``paused`` and ``ready`` false; readiness shows in ``ready``.
        """
        launch = parse_launch_request(json_body())
        user = caller()
        assert user is not None
        sim = manager().launch(user, launch)
        return sim.representation(), 201, {"Location": f"/simulation/{sim.id}"}

    @blp.doc(responses=_ERRORS)
    @blp.response(200, SimulationSchema(many=True))
    def get(self) -> list[dict[str, Any]]:
        """The caller's simulations (all of them for admins), finished ones included, in ID order."""
        user = caller()
        assert user is not None
        return [sim.representation() for sim in manager().visible_to(user)]


@blp.route("/simulation/<int:sim_id>")
class SimulationItem(MethodView):
    @blp.doc(responses={**_ERRORS, "403": {"description": "not viewable"}, "404": {"description": "unknown"}})
    @blp.response(200, SimulationSchema)
    def get(self, sim_id: int) -> dict[str, Any]:
        """One simulation."""
        sims = manager()
        sim = sims.find(sim_id)
        sims.check_view(caller(), sim)
        return sim.representation()
