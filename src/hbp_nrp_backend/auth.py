"""Who is calling, and what they may do.

In ``storage`` mode the bearer token is verified with the storage server's ``/identity/me``;
its ``id`` is the user. Verified tokens and granted views are cached for a short time; failures
are never cached. ``X-User-Name`` is never trusted. In ``none`` mode every caller is
``default-owner`` (or the ``X-User-Name`` it sends, for display) and every check passes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from hbp_nrp_backend.errors import STORAGE_UNAVAILABLE, ServiceUnavailable, Unauthorized
from hbp_nrp_commons.http_edge import MalformedAuthorization, parse_bearer

logger = logging.getLogger(__name__)

DEFAULT_OWNER = "default-owner"
#: Cache size above which expired entries are dropped (tokens rotate: the caches must not grow forever).
CACHE_PURGE_SIZE = 1024


class IdentityStorage(Protocol):
    """What authentication needs from the storage client."""

    def get_user(self, token: str) -> Mapping[str, Any]: ...

    def list_experiments(
        self, token: str, ctx: str | None, get_all: bool = False, name: str | None = None
    ) -> Any: ...


@dataclass(frozen=True)
class User:
    """The caller of a request: a verified user id and the token it presented (``None``: none)."""

    id: str
    token: str | None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (the only form accepted).

    Returns:
        the token, or ``None`` when there is no header.

    Raises:
        Unauthorized: another scheme (``Basic``), no token or several (``Bearer a b``).
    """
    try:
        return parse_bearer(authorization)
    except MalformedAuthorization as exc:
        raise Unauthorized() from exc


def experiment_listed(listing: Any, experiment_id: str) -> bool:
    """True if a storage experiment listing holds an entry named ``experiment_id``."""
    if not isinstance(listing, list):
        return False
    return any(isinstance(entry, dict) and entry.get("name") == experiment_id for entry in listing)


class Authenticator:
    """Authenticates requests and answers ``can_view``/``can_modify``.

    Args:
        mode: ``storage`` or ``none``.
        storage: the storage client (``get_user``, ``list_experiments``).
        admin_users: user ids that see (and may view) every simulation.
        ttl: seconds a positive answer stays cached.
        clock: monotonic time source (tests).
    """

    def __init__(
        self,
        mode: str,
        storage: IdentityStorage,
        admin_users: frozenset[str] = frozenset(),
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mode = mode
        self.storage = storage
        self.admin_users = admin_users
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._users: dict[str, tuple[str, float]] = {}
        self._views: dict[tuple[str, str | None, str], float] = {}
        self._newest: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def authenticate(self, authorization: str | None, user_name: str | None = None) -> User | None:
        """The caller of a request, or ``None`` when it presents no token.

        Args:
            authorization: the ``Authorization`` header.
            user_name: the ``X-User-Name`` header, only used for display in ``none`` mode.

        Raises:
            Unauthorized: malformed header or rejected token.
            ServiceUnavailable: storage could not be asked.
        """
        if not self.enabled:
            try:
                token = bearer_token(authorization)
            except Unauthorized:
                token = None
            return User((user_name or "").strip() or DEFAULT_OWNER, token)
        token = bearer_token(authorization)
        if token is None:
            return None
        return User(self.verify(token), token)

    def require(self, authorization: str | None, user_name: str | None = None) -> User:
        """Like :meth:`authenticate`, but a request without a token is 401."""
        user = self.authenticate(authorization, user_name)
        if user is None:
            raise Unauthorized()
        return user

    def verify(self, token: str) -> str:
        """The user id of ``token``, from the cache or from storage ``/identity/me``."""
        from hbp_nrp_backend.storage_client import StorageError, StorageUnauthorized

        now = self.clock()
        with self._lock:
            cached = self._users.get(token)
            if cached and cached[1] > now:
                return cached[0]
        try:
            identity = self.storage.get_user(token)
        except StorageUnauthorized as exc:
            raise Unauthorized() from exc
        except (StorageError, ConnectionError) as exc:
            logger.exception("Could not verify a token with the storage server")
            raise ServiceUnavailable(STORAGE_UNAVAILABLE) from exc
        user_id = identity.get("id") if isinstance(identity, Mapping) else None
        if not isinstance(user_id, str) or not user_id:
            raise Unauthorized()
        with self._lock:
            if len(self._users) >= CACHE_PURGE_SIZE:
                self._users = {key: value for key, value in self._users.items() if value[1] > now}
            self._users[token] = (user_id, now + self.ttl)
            self._newest[user_id] = token
        return user_id

    def newest_token(self, user_id: str) -> str | None:
        """The most recent verified token of ``user_id`` (to retry rejected log uploads)."""
        with self._lock:
            return self._newest.get(user_id)

    def experiment_accessible(self, user: User, experiment_id: str, ctx_id: str | None) -> bool:
        """True if storage lists ``experiment_id`` for the caller (cached when true).

        Raises:
            ServiceUnavailable: storage could not be asked.
        """
        from hbp_nrp_backend.storage_client import StorageError, StorageUnauthorized

        key = (user.token or "", ctx_id, experiment_id)
        now = self.clock()
        with self._lock:
            expiry = self._views.get(key)
            if expiry and expiry > now:
                return True
        try:
            listing = self.storage.list_experiments(user.token or "", ctx_id, name=experiment_id)
        except StorageUnauthorized:
            return False
        except (StorageError, ConnectionError) as exc:
            if getattr(exc, "status_code", None) in (400, 404):  # 400: a name storage refuses
                return False
            logger.exception("Could not list experiments on the storage server")
            raise ServiceUnavailable(STORAGE_UNAVAILABLE) from exc
        granted = experiment_listed(listing, experiment_id)
        if granted:
            with self._lock:
                if len(self._views) >= CACHE_PURGE_SIZE:
                    self._views = {key: expiry for key, expiry in self._views.items() if expiry > now}
                self._views[key] = now + self.ttl
        return granted

    def can_view(self, user: User, owner: str, experiment_id: str, ctx_id: str | None) -> bool:
        """The owner, an admin, or anyone storage shows the experiment to may view a simulation."""
        if not self.enabled or user.id == owner or user.id in self.admin_users:
            return True
        return self.experiment_accessible(user, experiment_id, ctx_id)

    def can_modify(self, user: User, owner: str) -> bool:
        """Only the owner may change a simulation's state."""
        if not self.enabled or user.id == owner:
            return True
        logger.info("Request from user '%s' but simulation owned by '%s'", user.id, owner)
        return False

    def sees_all(self, user: User) -> bool:
        """True for users that list every simulation (``NRP_ADMIN_USERS``; everyone in ``none`` mode)."""
        return not self.enabled or user.id in self.admin_users
