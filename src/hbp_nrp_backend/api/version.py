"""``GET /version``: the versions of the REST server and the Simulation Server."""

from __future__ import annotations

from importlib import metadata

from flask.views import MethodView
from flask_smorest import Blueprint

from hbp_nrp_backend.api.common import PUBLIC
from hbp_nrp_backend.api.schemas import VersionSchema

blp = Blueprint("version", __name__, description="Component versions")

DISTRIBUTION = "nrp-backend"


def package_version() -> str:
    """Our distribution's version, whitespace-stripped (both packages ship in it)."""
    try:
        return metadata.version(DISTRIBUTION).strip()
    except metadata.PackageNotFoundError:
        return "0.0.0"


@blp.route("/version")
class Version(MethodView):
    @blp.doc(security=PUBLIC)
    @blp.response(200, VersionSchema)
    def get(self) -> dict[str, str]:
        """Versions of hbp_nrp_backend and hbp_nrp_simserver; needs no token."""
        version = package_version()
        return {"hbp_nrp_backend": version, "hbp_nrp_simserver": version}
