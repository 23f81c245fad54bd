"""Authentication (Bearer tokens checked against storage) and who may see and change which
simulation, with a scripted storage."""

from __future__ import annotations

from typing import Any

import pytest

from hbp_nrp_backend.auth import Authenticator, User, bearer_token
from hbp_nrp_backend.errors import ServiceUnavailable, Unauthorized
from hbp_nrp_backend.storage_client import StorageError, StorageUnauthorized, StorageUnavailable


class ScriptedStorage:
    def __init__(self) -> None:
        self.users: dict[str, Any] = {"good": {"id": "alice"}, "bob-token": {"id": "bob"}}
        self.listings: dict[str, Any] = {}
        self.identity_calls = 0
        self.listing_calls = 0
        self.down = False
        self.status = 401

    def get_user(self, token: str) -> dict[str, Any]:
        self.identity_calls += 1
        if self.down:
            raise StorageUnavailable("down")
        if token not in self.users:
            raise StorageUnauthorized(f"Could not verify auth token, status code {self.status}", self.status)
        return self.users[token]

    def list_experiments(
        self, token: str, ctx: str | None, get_all: bool = False, name: str | None = None
    ) -> Any:
        self.listing_calls += 1
        if self.down:
            raise StorageUnavailable("down")
        return self.listings.get(token, [])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def storage() -> ScriptedStorage:
    return ScriptedStorage()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(storage: ScriptedStorage, clock: Clock) -> Authenticator:
    return Authenticator("storage", storage, frozenset({"root"}), ttl=60, clock=clock)


def test_bearer_token() -> None:
    assert bearer_token("Bearer aaa-bbb") == "aaa-bbb"
    assert bearer_token(None) is None
    with pytest.raises(Unauthorized):
        bearer_token("aaa")


def test_good_token_gives_the_storage_id_and_is_cached(auth: Authenticator, storage, clock) -> None:
    assert auth.require("Bearer good") == User("alice", "good")
    assert auth.require("Bearer good", user_name="mallory").id == "alice"  # X-User-Name ignored
    assert storage.identity_calls == 1
    clock.now += 61
    auth.require("Bearer good")
    assert storage.identity_calls == 2
    assert auth.newest_token("alice") == "good"


@pytest.mark.parametrize("status", [401, 403, 404, 477])
def test_rejected_token_is_401_and_not_cached(auth: Authenticator, storage, status: int) -> None:
    storage.status = status
    for _ in range(2):
        with pytest.raises(Unauthorized):
            auth.require("Bearer bad")
    assert storage.identity_calls == 2


def test_missing_token(auth: Authenticator) -> None:
    assert auth.authenticate(None) is None
    with pytest.raises(Unauthorized):
        auth.require(None)
    with pytest.raises(Unauthorized):
        auth.require("aaa")


def test_storage_down_is_503(auth: Authenticator, storage) -> None:
    storage.down = True
    with pytest.raises(ServiceUnavailable) as info:
        auth.require("Bearer good")
    assert info.value.status == 503 and info.value.message == "Storage server unavailable"
    storage.down = False
    assert auth.require("Bearer good").id == "alice"  # the failure was not cached


def test_can_view_and_modify(auth: Authenticator, storage) -> None:
    alice, bob, root = User("alice", "good"), User("bob", "bob-token"), User("root", "r")
    assert auth.can_view(alice, "alice", "exp", None)
    assert not auth.can_view(bob, "alice", "exp", None)  # storage lists [] for bob
    storage.listings["bob-token"] = [{"name": "other"}]
    assert not auth.can_view(bob, "alice", "exp", None)
    storage.listings["bob-token"] = [{"name": "exp"}]
    assert auth.can_view(bob, "alice", "exp", "ctx")
    calls = storage.listing_calls
    assert auth.can_view(bob, "alice", "exp", "ctx")  # cached
    assert storage.listing_calls == calls
    assert auth.can_view(root, "alice", "exp", None)
    assert auth.sees_all(root) and not auth.sees_all(alice)
    assert auth.can_modify(alice, "alice")
    assert not auth.can_modify(bob, "alice")
    assert not auth.can_modify(root, "alice")


def test_listing_error_is_503(auth: Authenticator, storage) -> None:
    storage.down = True
    with pytest.raises(ServiceUnavailable):
        auth.experiment_accessible(User("bob", "bob-token"), "exp", None)
    assert isinstance(StorageUnavailable("x"), StorageError)


def test_none_mode(storage) -> None:
    auth = Authenticator("none", storage)
    assert auth.require(None) == User("default-owner", None)
    assert auth.require("aaa").id == "default-owner"
    assert auth.require("Bearer t", user_name="carol") == User("carol", "t")
    assert auth.can_modify(User("x", None), "y") and auth.can_view(User("x", None), "y", "e", None)
    assert storage.identity_calls == 0


def test_caches_drop_expired_entries(auth: Authenticator, storage, clock) -> None:
    """Tokens rotate: a long-running server must not keep every token it ever verified."""
    for number in range(3000):
        token = f"token-{number}"
        storage.users[token] = {"id": "alice"}
        storage.listings[token] = [{"name": "exp"}]
        user = auth.authenticate(f"Bearer {token}")
        assert user is not None
        assert auth.experiment_accessible(user, "exp", None)
        clock.now += 1.0  # each token is used for a second, then replaced
    assert len(auth._users) <= 1024 + 1
    assert len(auth._views) <= 1024 + 1
    assert auth.newest_token("alice") == "token-2999"
