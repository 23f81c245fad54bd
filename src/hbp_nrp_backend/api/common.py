"""Helpers shared by the resources: the simulation manager, request bodies, the caller."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import current_app, request

from hbp_nrp_backend.errors import ClientError

if TYPE_CHECKING:
    from hbp_nrp_backend.auth import User
    from hbp_nrp_backend.simulations import SimulationManager

EXTENSION = "nrp_backend"

#: The OpenAPI ``security`` of an operation that needs no token (the others need a bearer token).
PUBLIC: list[dict[str, list[str]]] = []


def manager() -> SimulationManager:
    """The :class:`SimulationManager` of the running app."""
    return current_app.extensions[EXTENSION]


def json_body() -> dict[str, Any]:
    """The request body as a JSON object, whatever the ``Content-Type``; an empty body is ``{}``.

    Raises:
        ClientError: the body is not a JSON object (``Malformed JSON body``).
    """
    if not request.get_data(cache=True):
        return {}
    try:
        body = request.get_json(force=True, silent=True)
    except RecursionError as exc:  # nested deeper than the parser's recursion limit
        raise ClientError("Malformed JSON body: nested too deeply") from exc
    if not isinstance(body, dict):
        raise ClientError("Malformed JSON body")
    return body


def caller(required: bool = True) -> User | None:
    """The authenticated caller of the current request (see :class:`~hbp_nrp_backend.auth.Authenticator`)."""
    auth = manager().auth
    authorization = request.headers.get("Authorization")
    user_name = request.headers.get("X-User-Name")
    if required:
        return auth.require(authorization, user_name)
    return auth.authenticate(authorization, user_name)
