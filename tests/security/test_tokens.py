"""Tokens: only ``Bearer <one token>``, an expiry by default, revocation and expiry honoured by the
REST server within seconds, ``nrp user tokens|revoke``, and ``nrp up``'s token reuse."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests

from nrp_cli.up_env import owner_token, write_up_env
from tests.backend.conftest import BackendFactory, Storage, nrp
from tests.helpers.waiting import wait_until
from tests.security.conftest import Server

#: Generous: how long a revoked or expired token may keep working is seconds, not this.
DEADLINE = 30.0


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def wait_refused(url: str, token: str) -> None:
    """Poll until ``token`` is refused (401); fail after the deadline."""

    def refused() -> bool:
        headers = {"Authorization": f"Bearer {token}"}
        status = requests.get(url, headers=headers, timeout=DEADLINE).status_code
        assert status in (200, 401)
        return status == 401

    wait_until(refused, timeout=DEADLINE, message=f"{url} to refuse the token")


def protected(server: Server) -> str:
    return server.url + ("/simulation" if server.name == "rest" else "/identity/me")


@pytest.mark.parametrize(
    "header",
    ["Basic {t}", "Token {t}", "Bearer {t} extra", "Bearer  {t} {t}", "{t}", "Bearer", "bearer\t"],
)
def test_only_bearer_with_one_token_is_accepted(server: Server, header: str) -> None:
    url = protected(server)
    assert requests.get(url, headers={"Authorization": f"Bearer {server.token}"}, timeout=DEADLINE).ok
    response = requests.get(url, headers={"Authorization": header.format(t=server.token)}, timeout=DEADLINE)
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/json")


def test_new_tokens_expire_by_default(storage: Storage) -> None:
    token = nrp("user", "token", "alice", "--root", str(storage.root)).strip()
    listing = nrp("user", "tokens", "alice", "--root", str(storage.root))
    line = next(line for line in listing.splitlines() if token_id(token) in line)
    assert "never" not in line and "valid" in line


def test_an_expired_token_is_refused_by_the_rest_server_within_seconds(
    start_backend: BackendFactory, storage: Storage
) -> None:
    backend = start_backend()
    token = nrp("user", "token", "alice", "--root", str(storage.root), "--ttl", "3").strip()
    url = backend.url + "/simulation"
    assert (
        requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=DEADLINE).status_code == 200
    )
    wait_refused(url, token)


def test_a_revoked_token_is_refused_by_both_servers_within_seconds(
    start_backend: BackendFactory, storage: Storage
) -> None:
    backend = start_backend()
    token = nrp("user", "token", "alice", "--root", str(storage.root)).strip()
    urls = [backend.url + "/simulation", storage.url + "/identity/me"]
    for url in urls:
        assert requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=DEADLINE).ok
    nrp("user", "revoke", "alice", "--id", token_id(token), "--root", str(storage.root))
    for url in urls:
        wait_refused(url, token)
    # only that token: alice's other tokens still work
    assert requests.get(urls[0], headers={"Authorization": f"Bearer {storage.alice}"}, timeout=DEADLINE).ok
    assert token_id(token) not in nrp("user", "tokens", "alice", "--root", str(storage.root))


def test_nrp_up_reuses_its_saved_token_while_it_is_valid(tmp_path: Path) -> None:
    root, data = tmp_path / "storage", tmp_path / "data"
    first = owner_token(root, data, ttl=3600 * 48)
    write_up_env(data, {"NRP_TOKEN": first})
    assert owner_token(root, data, ttl=3600 * 48) == first
    # a token about to expire (less than a day left) is replaced, and so is an unknown one
    short = owner_token(root, tmp_path / "elsewhere", ttl=60)
    write_up_env(data, {"NRP_TOKEN": short})
    renewed = owner_token(root, data, ttl=3600 * 48)
    assert renewed not in (first, short)
    write_up_env(data, {"NRP_TOKEN": "not-a-token"})
    assert owner_token(root, data, ttl=3600 * 48) not in (first, short, renewed, "not-a-token")
