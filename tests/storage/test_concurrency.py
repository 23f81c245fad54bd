"""Concurrent requests on one storage server keep every experiment record."""

from __future__ import annotations

import threading

import requests

from .conftest import Storage


def test_listing_while_experiments_are_created_drops_no_record(storage: Storage) -> None:
    """A listing that sees a new record but not yet its folder must not delete that record."""
    stop = threading.Event()
    failures: list[str] = []

    def poll() -> None:
        with storage.session() as session:
            while not stop.is_set():
                session.get(f"{storage.url}/storage/experiments")

    def create(worker: int) -> None:
        with storage.session() as session:
            for i in range(40):
                name = f"race{worker}_{i}"
                response = session.put(f"{storage.url}/storage/{name}")
                if response.status_code != 200:
                    failures.append(f"PUT {name}: {response.status_code}")
                listed = session.get(f"{storage.url}/storage/{name}")
                if listed.status_code != 200:
                    failures.append(f"GET {name}: {listed.status_code} {listed.text}")

    pollers = [threading.Thread(target=poll) for _ in range(3)]
    creators = [threading.Thread(target=create, args=(w,)) for w in range(3)]
    for thread in pollers + creators:
        thread.start()
    for thread in creators:
        thread.join()
    stop.set()
    for thread in pollers:
        thread.join()
    assert failures == []
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {storage.alice}"
        names = {item["id"] for item in session.get(f"{storage.url}/storage/experiments").json()}
    assert {f"race{w}_{i}" for w in range(3) for i in range(40)} <= names


def test_concurrent_appends_to_one_file_lose_nothing(storage: Storage, exp: str) -> None:
    """Each append copies the old content to a temporary file: two at once must not drop one."""
    url = f"{storage.url}/storage/{exp}/log.txt"
    failures: list[int] = []

    def append(worker: int) -> None:
        with storage.session() as session:
            for i in range(15):
                line = f"{worker:02d}-{i:02d}\n".encode() * 100
                response = session.post(url, params={"append": "true"}, data=line)
                if response.status_code != 200:
                    failures.append(response.status_code)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with storage.session() as session:
        content = session.get(url, params={"byname": "true"}).content
    assert len(content) == 6 * 15 * 600
    assert {content[k : k + 600] for k in range(0, len(content), 600)} == {
        f"{w:02d}-{i:02d}\n".encode() * 100 for w in range(6) for i in range(15)
    }
