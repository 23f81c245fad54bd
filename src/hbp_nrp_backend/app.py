"""The REST server's Flask application factory."""

from __future__ import annotations

import logging
from importlib import resources
from typing import TYPE_CHECKING

from flask import Flask, Response, request, send_from_directory
from flask_smorest import Api

from hbp_nrp_backend.api import register_resources
from hbp_nrp_backend.api.common import EXTENSION
from hbp_nrp_backend.api.schemas import ApiErrorSchema
from hbp_nrp_backend.api.version import package_version
from hbp_nrp_backend.config import BackendConfig, load_backend_config
from hbp_nrp_backend.errors import ALLOWED_HEADERS, ALLOWED_METHODS, register_error_handlers
from hbp_nrp_commons.settings import Settings

if TYPE_CHECKING:
    from hbp_nrp_backend.simulations import BackendStorage

logger = logging.getLogger(__name__)

#: The Swagger UI page.
DOCS_PATH = "/docs"
#: Its script and style files, served from the flask-swagger-ui package's copy of the Swagger UI
#: distribution: the page loads nothing from another host.
SWAGGER_UI_ASSETS = "/docs/assets/"
#: How the page refers to them: relative to ``/docs``, so a proxy's path prefix is kept.
SWAGGER_UI_URL = "docs/assets/"
#: The OpenAPI name of the bearer token scheme; operations that need no token declare ``security=[]``.
BEARER_SCHEME = "bearerAuth"


def _swagger_ui_asset(filename: str) -> Response:
    """One file of the Swagger UI distribution (404 for anything outside it)."""
    dist = resources.files("flask_swagger_ui") / "dist"
    return send_from_directory(str(dist), filename)


def _document_security(api: Api) -> None:
    """Declare the bearer token scheme; every operation needs it unless it says otherwise."""
    api.spec.components.security_scheme(
        BEARER_SCHEME,
        {
            "type": "http",
            "scheme": "bearer",
            "description": "A storage server token, e.g. from `nrp user token NAME` or `nrp up`.",
        },
    )


class _Api(Api):
    """flask-smorest's ``Api`` documenting our error body (``default`` responses included)."""

    ERROR_SCHEMA = ApiErrorSchema


def _cors(response: Response) -> Response:
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _answer_options() -> Response | None:
    """``OPTIONS`` on a known route: 204 with the CORS headers (unknown routes still give 404)."""
    if request.method != "OPTIONS" or request.url_rule is None:
        return None
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
    response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
    response.headers["Allow"] = ", ".join(sorted(request.url_rule.methods or ()))
    return response


def create_app(
    settings: BackendConfig | Settings | None = None,
    *,
    storage: BackendStorage | None = None,
    start: bool = True,
) -> Flask:
    """Build the REST server.

    Args:
        settings: the backend configuration (a bare :class:`Settings` is completed from the
            environment; ``None`` reads everything from the environment).
        storage: a storage client to use instead of one built from the settings (tests).
        start: run the start-up work now: restart reconciliation, stale retained message
            cleanup, the spool retry and watchdog threads.

    Returns:
        the Flask app; its :class:`~hbp_nrp_backend.simulations.SimulationManager` is
        ``app.extensions["nrp_backend"]``.
    """
    from hbp_nrp_backend.simulations import SimulationManager

    if settings is None:
        config = load_backend_config()
    elif isinstance(settings, Settings):
        config = load_backend_config(settings=settings)
    else:
        config = settings

    app = Flask("hbp_nrp_backend", static_folder=None)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config.update(
        API_TITLE="NRP backend",
        API_VERSION=package_version(),
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH=DOCS_PATH,
        OPENAPI_SWAGGER_UI_URL=SWAGGER_UI_URL,
        # No validator badge (it would load an image from the validator's host).
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
        API_SPEC_OPTIONS={"security": [{BEARER_SCHEME: []}]},
        PROPAGATE_EXCEPTIONS=False,
    )
    api = _Api(app)
    _document_security(api)
    app.add_url_rule(
        SWAGGER_UI_ASSETS + "<path:filename>", endpoint="swagger_ui_assets", view_func=_swagger_ui_asset
    )
    register_resources(api)
    register_error_handlers(app)
    app.before_request(_answer_options)
    app.after_request(_cors)

    manager = SimulationManager(config, storage=storage)
    app.extensions[EXTENSION] = manager
    if start:
        manager.start()
    return app
