"""A killed upload never leaves a truncated file: writes go to a temporary, renamed when complete."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import requests

from tests.helpers.waiting import HANG, wait_until

from .conftest import add_user, start_storage

SIZE = 200 * 1024 * 1024
CHUNK = 1024 * 1024


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _head(exp: str, token: str) -> bytes:
    return (
        f"POST /storage/{exp}/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {SIZE}\r\n\r\n"
    ).encode()


def _temporaries(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if name.startswith(".nrp-tmp-")]


def test_kill_during_upload_leaves_old_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    token = add_user(root, "alice")
    env = {"NRP_STORAGE_MAX_UPLOAD_MB": "400"}
    old = b"old content\n" * 1000
    server = start_storage(root, env=env)
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        assert session.put(f"{server.url}/storage/demo").ok
        assert session.post(f"{server.url}/storage/demo/big.bin", data=old).ok

        # 1. killed while the body is still arriving, sent slowly in pieces
        with _connect(server.url) as sock:
            sock.sendall(_head("demo", token))
            block = b"\x01" * CHUNK
            for _ in range(SIZE // CHUNK // 2):
                sock.sendall(block)
            # sendall returns once the server has read all but the socket buffers: it is receiving
            server.kill()
    finally:
        server.kill()
    folder = root / "demo"
    assert (folder / "big.bin").read_bytes() == old

    # 2. killed while the server writes the body to disk
    server = start_storage(root, env=env)
    caught_temporary = False
    try:
        sock = _connect(server.url)
        sender = threading.Thread(
            target=lambda: sock.sendall(_head("demo", token) + b"\x02" * SIZE), daemon=True
        )
        sender.start()

        def writing_or_written() -> str | None:
            if _temporaries(folder):
                server.kill()  # at once: while the body is being written
                return "writing"
            if (folder / "big.bin").stat().st_size == SIZE:
                return "written"  # too late: the write completed before the kill
            return None

        caught_temporary = wait_until(writing_or_written, interval=0.002, message="the write") == "writing"
        server.kill()
        sock.close()
        sender.join(HANG)
    finally:
        server.kill()
    content = (folder / "big.bin").read_bytes()
    assert content == old or content == b"\x02" * SIZE, len(content)
    if caught_temporary:
        assert content == old
        assert _temporaries(folder)  # the half-written temporary is what was left

    # 3. a restart removes leftover temporaries; they never show in listings
    server = start_storage(root, env=env)
    try:
        assert _temporaries(folder) == []
        listing = requests.get(
            f"{server.url}/storage/demo", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert [entry["name"] for entry in listing] == ["big.bin"]
        assert listing[0]["size"] in (len(old), SIZE)
    finally:
        server.stop()
    assert caught_temporary, "the kill never hit the write: the test did not exercise the atomic rename"
