"""Malformed input is a JSON 4xx, never a 500: deeply nested JSON, names over 255 bytes."""

from __future__ import annotations

import pytest
import requests

from tests.security.conftest import Server

DEADLINE = 60.0
NESTED = "[" * 100_000 + "]" * 100_000


def assert_json_400(response: requests.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["type"] == "Client error"


@pytest.mark.parametrize("path", ["/simulation", "/simulation/0/state"])
def test_deeply_nested_json_is_400_on_the_rest_server(rest_server: Server, path: str) -> None:
    auth = {"Authorization": f"Bearer {rest_server.token}", "Content-Type": "application/json"}
    if path.endswith("/state"):  # needs a simulation of alice's
        launched = requests.post(
            rest_server.url + "/simulation",
            json={"experimentID": "my_cloned_experiment"},
            headers=auth,
            timeout=DEADLINE,
        )
        assert launched.status_code == 201, launched.text
        path = f"/simulation/{launched.json()['simulationID']}/state"
        response = requests.put(rest_server.url + path, data=NESTED, headers=auth, timeout=DEADLINE)
    else:
        response = requests.post(rest_server.url + path, data=NESTED, headers=auth, timeout=DEADLINE)
    assert_json_400(response)


def test_deeply_nested_json_is_400_on_the_storage_server(storage_server: Server) -> None:
    auth = {"Authorization": f"Bearer {storage_server.token}"}
    response = requests.post(
        storage_server.url + "/storage/clone", data=NESTED, headers=auth, timeout=DEADLINE
    )
    assert_json_400(response)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/storage/{long}"),
        ("GET", "/storage/{long}"),
        ("DELETE", "/storage/{long}"),
        ("POST", "/storage/longnames/{long}"),
        ("GET", "/storage/longnames/{long}"),
        ("POST", "/storage/longnames/{long}?type=folder"),
        ("GET", "/storage/longnames%2F{long}"),
        ("POST", "/storage/clone/{long}"),
    ],
)
def test_names_over_255_bytes_are_400_on_the_storage_server(
    storage_server: Server, method: str, path: str
) -> None:
    auth = {"Authorization": f"Bearer {storage_server.token}"}
    created = requests.put(storage_server.url + "/storage/longnames", headers=auth, timeout=DEADLINE)
    assert created.status_code in (200, 201, 409), created.text
    for long in ("a" * 256, "é" * 128):  # 256 bytes: one character or two per byte
        response = requests.request(
            method, storage_server.url + path.format(long=long), data=b"x", headers=auth, timeout=DEADLINE
        )
        assert response.status_code in (400, 404), (response.status_code, response.text)
        assert response.headers["Content-Type"].startswith("application/json")
