"""Fixtures of the security tests: the backend tests' real broker, storage server and REST servers.

``edge`` is one REST server and the session's storage server, with a short header timeout, as a
pair of base URLs and tokens the tests address the same way (``servers`` parametrises over both).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.backend.conftest import (  # noqa: F401  # fixtures used by the tests of this folder
    BackendFactory,
    Storage,
    broker,
    own_storage,
    start_backend,
    storage,
)
from tests.storage.conftest import add_user
from tests.storage.conftest import start_storage as start_storage_server

#: Seconds a request's headers may take in the ``edge`` servers (short so the tests stay fast).
HEADER_TIMEOUT = 2


@dataclass(frozen=True)
class Server:
    """One server under attack: its name, base URL, a valid token and its health path."""

    name: str
    url: str
    token: str
    health: str

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.url.split("://", 1)[1].rsplit(":", 1)
        return host.strip("[]"), int(port)


@pytest.fixture
def rest_server(start_backend: BackendFactory, storage: Storage) -> Server:  # noqa: F811
    backend = start_backend(NRP_HTTP_HEADER_TIMEOUT=str(HEADER_TIMEOUT))
    return Server("rest", backend.url, storage.alice, "/health")


@pytest.fixture(scope="module")
def storage_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A storage server of its own (8 MB body limit, short header timeout), with user alice."""
    root = tmp_path_factory.mktemp("edge-storage")
    token = add_user(root, "alice")
    process = start_storage_server(root, env={"NRP_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT)})
    yield Server("storage", process.url, token, "/health")
    process.stop()


@pytest.fixture(params=["rest", "storage"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """Each server in turn."""
    yield request.getfixturevalue(f"{request.param}_server")
