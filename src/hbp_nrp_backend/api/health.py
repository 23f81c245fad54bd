"""``GET /health``: liveness of the REST server; never waits for anything."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from hbp_nrp_backend.api.common import PUBLIC
from hbp_nrp_backend.api.schemas import HealthSchema

blp = Blueprint("health", __name__, description="Liveness")


@blp.route("/health")
class Health(MethodView):
    @blp.doc(security=PUBLIC)
    @blp.response(200, HealthSchema)
    def get(self) -> dict[str, str]:
        """Always ``{"status": "ok"}`` while the server answers; needs no token."""
        return {"status": "ok"}
