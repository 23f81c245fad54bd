"""The storage server's Flask app factory."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import PathConverter, WebsocketMismatch

from hbp_nrp_commons.settings import SERVICE_USER, StorageSettings

from .errors import StorageServerError, TooManyRequests, error_body
from .frontend import FrontendFiles
from .paths import RawPathMiddleware
from .registry import BackendRegistry, parse_backends_env
from .routes import StorageApi
from .store import ExperimentStore
from .templates import TemplateCatalogue, default_templates_dir
from .users import UserStore
from .zips import ZipLimits

log = logging.getLogger(__name__)

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, PUT, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": (
        "Accept, Authorization, Context-Id, Content-Type, Origin, X-Requested-With"
    ),
    "Access-Control-Expose-Headers": "uuid, content-disposition",
}


class AnythingConverter(PathConverter):
    """A ``path`` converter whose match includes newlines."""

    regex = "[^/](?s:.*?)"


ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]


def build_api(settings: StorageSettings) -> StorageApi:
    """The request handler of ``settings.root``; opening the store removes leftover temporaries."""
    templates = settings.templates if settings.templates is not None else default_templates_dir()
    root = settings.root.expanduser().resolve()
    users = UserStore(root)
    registry = None
    env_entries = parse_backends_env(settings.backends)
    if env_entries or settings.backends_files:
        tokens: list[str] = []

        def service_token() -> str:
            """The service user's token, issued on the first poll (its older tokens end then)."""
            if not tokens:
                tokens.append(users.service_token(SERVICE_USER))
            return tokens[0]

        registry = BackendRegistry(
            env_entries,
            list(settings.backends_files),
            service_token,
            interval=settings.poll_interval or 3.0,
        )
    return StorageApi(
        store=ExperimentStore(root),
        users=users,
        templates=TemplateCatalogue(templates),
        max_upload=settings.max_upload_bytes,
        zip_limits=ZipLimits(
            max_bytes=settings.zip_max_mb * 1024 * 1024,
            max_files=settings.zip_max_files,
            max_ratio=settings.zip_max_ratio,
        ),
        registry=registry,
        frontend=FrontendFiles(settings.frontend) if settings.frontend is not None else None,
        token_ttl=settings.token_ttl,
        login_origins=settings.login_origins,
    )


def create_app(settings: StorageSettings) -> Flask:
    """Build the storage server app for one storage root.

    Args:
        settings: root, templates folder and limits; the listen address is the server's business.

    Returns:
        a Flask app whose ``wsgi_app`` routes on the raw request path; ``app.extensions["nrp_storage"]``
        holds the :class:`StorageApi`.
    """
    app = Flask(__name__, static_folder=None)  # /static/... belongs to the frontend build
    app.config["MAX_CONTENT_LENGTH"] = None  # the API checks the limit itself and answers JSON
    api = build_api(settings)
    app.extensions["nrp_storage"] = api
    if api.registry is not None:
        api.registry.start()

    def dispatch(path: str = "") -> Response:
        return api.dispatch(request)

    # the API routes on the raw path itself; this rule only has to match every path, newlines too
    # (werkzeug's ``path`` converter does not match a decoded "%0A", so such files were unreachable)
    app.url_map.converters["anything"] = AnythingConverter
    app.add_url_rule("/", "dispatch", dispatch, methods=ALL_METHODS, provide_automatic_options=False)
    app.add_url_rule(
        "/<anything:path>", "dispatch", dispatch, methods=ALL_METHODS, provide_automatic_options=False
    )

    @app.errorhandler(StorageServerError)
    def storage_error(exc: StorageServerError) -> Response:
        response = jsonify(exc.to_json())
        response.status_code = exc.status
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        if isinstance(exc, WebsocketMismatch):  # an MQTT WebSocket that missed the gateway
            message = "WebSocket (MQTT) connections are served by the gateway on a fresh connection"
            return jsonify(error_body(400, message)), 400
        return jsonify(error_body(status, exc.description or exc.name)), status

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return jsonify(error_body(500, f"Internal error: {type(exc).__name__}")), 500

    @app.after_request
    def cors(response: Response) -> Response:
        response.headers.update(CORS_HEADERS)
        return response

    app.wsgi_app = RawPathMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app
