"""Typed errors of the storage server and their JSON form ``{"message", "type", "data"}``."""

from __future__ import annotations

from typing import Any


class StorageServerError(Exception):
    """An error answered to the client with ``status`` and a JSON body.

    Raised anywhere below a request handler; the app turns it into the response.
    """

    status = 500

    def __init__(self, message: str, data: Any = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        if status is not None:
            self.status = status

    def to_json(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.data)


class BadRequest(StorageServerError):
    """Malformed input: path traversal, bad JSON, bad zip, reserved name (400)."""

    status = 400


class Unauthorized(StorageServerError):
    """Missing, malformed, unknown or expired token (401)."""

    status = 401

    def __init__(self, message: str = "Authentication required", data: Any = None) -> None:
        super().__init__(message, data)


class LoginRequired(StorageServerError):
    """Missing or bad token on a ``/proxy`` route (477): the NRP frontend then opens the login page.

    The body is our JSON error plus the original's ``{"mode", "url", "clientId"}``.
    """

    status = 477

    def __init__(self, message: str = "Authentication required", data: Any = None) -> None:
        super().__init__(message, data)

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "mode": "local",
            "url": "/authentication/loginpage?origin=FS",
            "clientId": "nrp",
        }


class Forbidden(StorageServerError):
    """The caller may not use this experiment (403)."""

    status = 403

    def __init__(self, message: str = "Authentication error", data: Any = None) -> None:
        super().__init__(message, data)


class NotFound(StorageServerError):
    """Unknown route, experiment or file (404)."""

    status = 404


class Conflict(StorageServerError):
    """The target already exists, or a file stands where a folder must be (409)."""

    status = 409


class PayloadTooLarge(StorageServerError):
    """Request body over ``NRP_STORAGE_MAX_UPLOAD_MB`` (413)."""

    status = 413


class TooManyRequests(StorageServerError):
    """Too many failed logins (429); ``retry_after`` seconds go in the ``Retry-After`` header."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, {"retryAfter": retry_after})
        self.retry_after = retry_after


class NotImplementedYet(StorageServerError):
    """A route of the original that we answer but do not implement (501)."""

    status = 501


def error_body(status: int, message: str, data: Any = None) -> dict[str, Any]:
    """The JSON error body ``{message, type, data}``; ``type``: ``Client error`` (4xx) or ``Server Error``."""
    kind = "Client error" if 400 <= status < 500 else "Server Error"
    return {"message": message, "type": kind, "data": data}
