"""The REST error model: every 4xx and 5xx answer is ``{"message", "type", "data"}`` in JSON.

Resources raise :class:`ApiError` subclasses; :func:`register_error_handlers` renders them, and
also werkzeug's own HTTP errors (404, 405, ...) and unexpected exceptions, the same way.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)

CLIENT_ERROR = "Client error"
SERVER_ERROR = "Server Error"
GENERAL_ERROR = "General error"
TRANSITION_ERROR = "State Transition error"

NOT_FOUND_MESSAGE = "The command you requested was not found on this server"
SIMULATION_NOT_FOUND = "The simulation with the given ID was not found"
AUTH_REQUIRED = "Authentication required"
VIEW_FORBIDDEN = (
    "Insufficient permissions to see the simulation changes. You can only see the simulations "
    "you own or those for which the experiment has been shared with you"
)
MODIFY_FORBIDDEN = "Insufficient permissions to apply changes. Operation only allowed by simulation owner"
STORAGE_UNAVAILABLE = "Storage server unavailable"
BROKER_UNREACHABLE = "MQTT broker unreachable"

ALLOWED_METHODS = "GET, POST, PUT, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, X-User-Name, Context-Id"
#: Headers of the errors the WSGI server answers itself (413, malformed requests).
CORS_ERROR_HEADERS = {"Access-Control-Allow-Origin": "*"}


class ApiError(Exception):
    """An error answered as ``{"message", "type", "data"}`` with an HTTP status code.

    Args:
        message: the ``message`` field.
        status: the HTTP status code.
        error_type: the ``type`` field.
        data: the ``data`` field (a string or ``None``).
    """

    status = 500
    error_type = SERVER_ERROR

    def __init__(
        self,
        message: str,
        status: int | None = None,
        error_type: str | None = None,
        data: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type
        self.data = data

    def __str__(self) -> str:
        return f"'{self.message}' ({self.error_type})"


class ClientError(ApiError):
    """A 4xx caused by the request (``type`` ``Client error``, 400 unless told)."""

    status = 400
    error_type = CLIENT_ERROR


class NotFound(ClientError):
    status = 404


class Unauthorized(ClientError):
    status = 401

    def __init__(self, message: str = AUTH_REQUIRED) -> None:
        super().__init__(message)


class Forbidden(ClientError):
    status = 403


class Conflict(ClientError):
    status = 409


class TransitionError(ApiError):
    """A rejected lifecycle command: 400 ``State Transition error``; the simulation is unaffected."""

    status = 400
    error_type = TRANSITION_ERROR


class ServiceUnavailable(ApiError):
    """A service we depend on (storage, broker) is unreachable: 503 ``Server Error``."""

    status = 503
    error_type = SERVER_ERROR


def error_response(status: int, message: str, error_type: str, data: str | None = None) -> Response:
    """The JSON error answer of every failing request."""
    response = jsonify({"message": message, "type": error_type, "data": data})
    response.status_code = status
    return response


def _handle_api_error(error: ApiError) -> Response:
    if error.status >= 500:
        logger.error("Request failed: %s", error, exc_info=error.__cause__ or error)
    return error_response(error.status, error.message, error.error_type, error.data)


def _handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 404:
        response = error_response(404, NOT_FOUND_MESSAGE, CLIENT_ERROR)
    elif status == 405:
        response = error_response(405, "Method not allowed", CLIENT_ERROR)
    elif status == 422:
        # flask-smorest/webargs validation: invalid input is a 400 here, as everywhere in this API.
        response = error_response(400, "Invalid request", CLIENT_ERROR)
    elif status < 500:
        response = error_response(status, error.description or error.name, CLIENT_ERROR)
    else:
        response = error_response(status, error.description or error.name, SERVER_ERROR)
    # Keep headers such as Allow (405) that werkzeug computed for the error.
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _handle_unexpected(error: Exception) -> Response:
    logger.exception("Unexpected error while handling a request")
    return error_response(500, f"Internal server error: {error}", GENERAL_ERROR)


def register_error_handlers(app: Flask) -> None:
    """Render every error of ``app`` as JSON; call after flask-smorest's ``Api`` registered its own."""
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
