"""Bad input (paths, names, bodies, archives, requests) changes nothing and is never a 500."""

from __future__ import annotations

import io
import json
import os
import socket
import zipfile
from pathlib import Path

import pytest
import requests

from .conftest import Storage
from .test_routes import error_of, make_zip


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if ".sqlite3" not in p.name}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "secret.txt").write_text("secret")
    return secret


TRAVERSALS = [
    ("GET", "/storage/{exp}/..%2F..%2Fsecret.txt?byname=true"),
    ("GET", "/storage/{exp}%2F..%2F..%2Fetc/passwd?byname=true"),
    ("GET", "/storage/x/%2Fetc%2Fpasswd"),
    ("GET", "/storage/x/..%2F{exp}%2Fa.txt"),
    ("GET", "/storage/%2Fetc"),
    ("GET", "/storage/{exp}%2F..%2F..%2F"),
    ("GET", "/storage/{exp}%2F.%2Fa.txt"),
    ("GET", "/storage/{exp}/a%5C..%5Cb?byname=true"),
    ("POST", "/storage/{exp}/..%2Fescaped.txt"),
    ("POST", "/storage/{exp}/sub%2F..%2F..%2Fescaped.txt"),
    ("POST", "/storage/{exp}%2F..%2Fother/escaped.txt"),
    ("POST", "/storage/{exp}/%00.txt"),
    ("POST", "/storage/{exp}/.nrp-tmp-x"),
    ("POST", "/storage/{exp}/a%2F..%2F..%2Fnew?type=folder"),
    ("DELETE", "/storage/x/..%2F..?type=folder"),
    ("DELETE", "/storage/{exp}/..%2F..%2Fsecret.txt?byname=true"),
    ("DELETE", "/storage/{exp}%2F..%2F..%2Fsecret.txt"),
    ("PUT", "/storage/..%2Fnew_exp"),
    ("PUT", "/storage/%2Ftmp%2Fnew_exp"),
    ("POST", "/storage/clone/..%2F{exp}"),
]


@pytest.mark.parametrize(("method", "path"), TRAVERSALS)
def test_traversal_is_400_and_changes_nothing(
    storage: Storage, alice: requests.Session, exp: str, method: str, path: str
) -> None:
    assert alice.post(f"{storage.url}/storage/{exp}/a.txt", data=b"a").ok
    before = tree(storage.root)
    response = alice.request(method, storage.url + path.format(exp=exp), data=b"evil")
    assert response.status_code == 400, (path, response.status_code, response.text)
    assert error_of(response)["type"] == "Client error"
    assert tree(storage.root) == before


def test_raw_socket_dot_dot_segments(storage: Storage, exp: str) -> None:
    """``..`` as a real path segment (clients usually normalise it away) is refused too."""
    host, port = storage.url.removeprefix("http://").split(":")
    request = (
        f"GET /storage/{exp}/../../etc/passwd?byname=true HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {storage.alice}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"root:" not in answer


def test_symlink_leading_outside_is_400(
    storage: Storage, alice: requests.Session, exp: str, outside: Path
) -> None:
    os.symlink(outside, storage.root / exp / "link")
    os.symlink(outside / "secret.txt", storage.root / exp / "file_link")
    before = tree(storage.root)
    url = f"{storage.url}/storage/{exp}"
    for method, path in [
        ("GET", "/link/secret.txt?byname=true"),
        ("GET", "/file_link?byname=true"),
        ("GET", "%2Flink"),
        ("POST", "/link/new.txt"),
        ("POST", "/file_link"),
        ("DELETE", "/link/secret.txt?byname=true"),
        ("POST", "/link/x?type=folder"),
    ]:
        response = alice.request(method, url + path, data=b"evil")
        assert response.status_code == 400, (method, path, response.text)
    assert tree(storage.root) == before
    assert (outside / "secret.txt").read_text() == "secret"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def zip_with_symlink() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("top/simulation_config.json", b"{}")
        info = zipfile.ZipInfo("top/link")
        info.external_attr = (0o120777 << 16) | 0
        archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def zip_bomb(size: int) -> bytes:
    return make_zip({"top/simulation_config.json": b"{}", "top/zeros.bin": b"\0" * size})


BAD_ZIPS = {
    "slip": make_zip({"top/simulation_config.json": b"{}", "top/../../escaped.txt": b"x"}),
    "absolute": make_zip({"top/simulation_config.json": b"{}", "/tmp/escaped.txt": b"x"}),
    "backslash": make_zip({"top/simulation_config.json": b"{}", "top\\..\\..\\escaped.txt": b"x"}),
    "symlink": zip_with_symlink(),
    "ratio": zip_bomb(2 * 1024 * 1024),
    "too_big": make_zip({f"top/f{i}.bin": os.urandom(1024 * 1024) for i in range(5)}),
    "too_many": make_zip({"top/simulation_config.json": b"{}", **{f"top/{i}.txt": b"x" for i in range(60)}}),
    "not_a_zip": b"this is not a zip file",
    "truncated": make_zip({"top/simulation_config.json": b"{}", "top/a.bin": os.urandom(5000)})[:3000],
}


@pytest.mark.parametrize("kind", sorted(BAD_ZIPS))
def test_bad_zip_is_400_and_extracts_nothing(
    storage: Storage, alice: requests.Session, exp: str, kind: str
) -> None:
    before = tree(storage.root)
    body = BAD_ZIPS[kind]
    imported = alice.post(f"{storage.url}/storage/importExperiment", data=body)
    assert imported.status_code == 400, (kind, imported.text)
    assert error_of(imported)["type"] == "Client error"
    uploaded = alice.post(f"{storage.url}/storage/{exp}/x.zip", params={"type": "zip"}, data=body)
    assert uploaded.status_code == 400, (kind, uploaded.text)
    assert tree(storage.root) == before
    assert not (storage.root.parent / "escaped.txt").exists()


def test_body_over_limit_is_413_and_changes_nothing(
    storage: Storage, alice: requests.Session, exp: str
) -> None:
    """The server runs with NRP_STORAGE_MAX_UPLOAD_MB=8."""
    url = f"{storage.url}/storage/{exp}/big.bin"
    assert alice.post(url, data=b"old").ok
    exact = alice.post(f"{storage.url}/storage/{exp}/exact.bin", data=b"\1" * (8 * 1024 * 1024))
    assert exact.status_code == 200
    # refused from the Content-Length, before the body is read
    host, port = storage.url.removeprefix("http://").split(":")
    head = (
        f"POST /storage/{exp}/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {storage.alice}\r\n"
        f"Content-Length: {8 * 1024 * 1024 + 1}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # a chunked body without Content-Length is cut off by the same limit
    chunks = (b"\2" * (1024 * 1024) for _ in range(10))
    response = alice.post(url, data=chunks)
    assert response.status_code == 413
    assert alice.get(url, params={"byname": "true"}).content == b"old"
    assert ".nrp-tmp" not in " ".join(tree(storage.root))


def test_malformed_json_and_wrong_shapes(storage: Storage, alice: requests.Session) -> None:
    for body in (b"{", b"\xff\xfe", b'"just a string"', b'{"expPath": 5}', b""):
        response = alice.post(f"{storage.url}/storage/clone", data=body)
        assert response.status_code == 400, body
        error_of(response)


def test_writes_where_a_folder_or_file_is_in_the_way(
    storage: Storage, alice: requests.Session, exp: str
) -> None:
    url = f"{storage.url}/storage/{exp}"
    assert alice.post(f"{url}/folder/inner.txt", data=b"x").ok
    assert alice.post(f"{url}/folder", data=b"x").status_code == 409
    assert alice.post(f"{url}/folder/inner.txt/deeper.txt", data=b"x").status_code == 409
    assert alice.post(f"{url}/folder/inner.txt", params={"type": "folder"}).status_code == 409
    assert alice.get(f"{url}/folder?byname=true").status_code == 404
    assert alice.get(f"{url}/folder/inner.txt?byname=true").content == b"x"


def test_no_500_for_odd_requests(storage: Storage, alice: requests.Session, exp: str) -> None:
    for method, path in [
        ("PATCH", f"/storage/{exp}"),
        ("POST", f"/storage/{exp}"),
        ("PUT", f"/storage/{exp}/file.txt"),
        ("GET", "/storage/experiments/x/y/z"),
        ("GET", f"/storage/experiments/{exp}/zip/extra"),
        ("GET", "/storage/%ZZ"),
        ("GET", f"/storage/{exp}/{exp}"),
        ("GET", "/storage/x/y?byname=maybe"),
        ("DELETE", "/storage/x"),
    ]:
        response = alice.request(method, storage.url + path)
        assert 400 <= response.status_code < 500, (method, path, response.status_code, response.text)
        error_of(response)


def test_zip_upload_conflicting_with_the_tree_changes_nothing(
    storage: Storage, alice: requests.Session, exp: str, outside: Path
) -> None:
    url = f"{storage.url}/storage/{exp}"
    assert alice.post(f"{url}/d/inner.txt", data=b"old").ok
    assert alice.post(f"{url}/plain.txt", data=b"old").ok
    os.symlink(outside, storage.root / exp / "link")
    before = tree(storage.root)
    for entries, status in [
        ({"new.txt": b"n", "d": b"file where a folder is"}, 409),
        ({"new.txt": b"n", "plain.txt/x": b"folder where a file is"}, 409),
        ({"new.txt": b"n", "link/evil.txt": b"through a symlink"}, 400),
    ]:
        response = alice.post(f"{url}/x.zip", params={"type": "zip"}, data=make_zip(entries))
        assert response.status_code == status, response.text
        assert tree(storage.root) == before
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_odd_zip_contents_are_client_errors(storage: Storage, alice: requests.Session, exp: str) -> None:
    before = tree(storage.root)
    for entries in (
        {".hidden/simulation_config.json": b"{}"},
        {"top/simulation_config.json/": None, "top/a.txt": b"a"},
        {"top/a.txt": b"no config"},
        {"top/simulation_config.json": b"[1, 2]"},
    ):
        response = alice.post(f"{storage.url}/storage/importExperiment", data=make_zip(entries))
        assert response.status_code == 400, (entries, response.text)
    assert tree(storage.root) == before
    # a folder named simulation_config.json does not break the listing
    assert alice.post(f"{storage.url}/storage/{exp}/simulation_config.json", params={"type": "folder"}).ok
    items = {e["id"]: e for e in alice.get(f"{storage.url}/storage/experiments").json()}
    assert items[exp]["configuration"]["corrupted"] is True


def test_zip_with_a_file_and_a_folder_of_the_same_name_is_400(
    storage: Storage, alice: requests.Session, exp: str
) -> None:
    """A zip holding both ``a`` (file) and ``a/b`` or ``a/`` is malformed input, not a server error."""
    before = tree(storage.root)
    for entries in (
        {"top/simulation_config.json": b"{}", "top/a": b"file", "top/a/b": b"inside"},
        {"top/simulation_config.json": b"{}", "top/a": b"file", "top/a/": None},
    ):
        body = make_zip(entries)
        imported = alice.post(f"{storage.url}/storage/importExperiment", data=body)
        assert imported.status_code == 400, (entries, imported.status_code, imported.text)
        error_of(imported)
        uploaded = alice.post(f"{storage.url}/storage/{exp}/x.zip", params={"type": "zip"}, data=body)
        assert uploaded.status_code == 400, (entries, uploaded.status_code, uploaded.text)
    assert tree(storage.root) == before


def _raw_exchange(storage: Storage, request: bytes) -> bytes:
    host, port = storage.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_errors_waitress_answers_itself_are_json_with_cors(storage: Storage, exp: str) -> None:
    """A Content-Length over the limit (refused before the body is read) and a malformed request."""
    head = (
        f"POST /storage/{exp}/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {storage.alice}\r\n"
        f"Content-Length: {8 * 1024 * 1024 + 1}\r\n\r\n"
    ).encode()
    malformed = b"POST /storage/x/y HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"
    for request, status, message in [
        (head, 413, f"Request body exceeds the limit of {8 * 1024 * 1024} bytes"),
        (malformed, 400, "Bad Request"),
    ]:
        answer = _raw_exchange(storage, request)
        header_block, _, body = answer.partition(b"\r\n\r\n")
        lines = header_block.decode("latin-1").split("\r\n")
        assert lines[0].startswith(f"HTTP/1.1 {status} "), answer[:300]
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        assert headers["content-type"] == "application/json"
        assert headers["access-control-allow-origin"] == "*"
        error = json.loads(body)
        assert set(error) == {"message", "type", "data"}
        assert error["type"] == "Client error"
        assert error["message"] == message


def test_file_names_with_control_characters_download(
    storage: Storage, alice: requests.Session, exp: str
) -> None:
    """A name that cannot go into a header as is (``uuid``, ``Content-Disposition``) is not a 500."""
    url = f"{storage.url}/storage/{exp}/a%0Db%01.txt"
    assert alice.post(url, data=b"x").status_code == 200
    response = alice.get(url, params={"byname": "true"})
    assert response.status_code == 200, response.text
    assert response.content == b"x"
    assert response.headers["uuid"] == f"{exp}/a%0Db%01.txt"
    assert "\r" not in response.headers["Content-Disposition"]


def test_file_names_with_a_newline_are_reachable(storage: Storage, alice: requests.Session, exp: str) -> None:
    """A zip may carry ``a\\nb.txt``; it must be readable and deletable like any other file."""
    url = f"{storage.url}/storage/{exp}/a%0Ab.txt"
    assert alice.post(url, data=b"nl").status_code == 200
    assert alice.get(url, params={"byname": "true"}).content == b"nl"
    assert alice.delete(url, params={"byname": "true"}).status_code == 200
    assert alice.get(url, params={"byname": "true"}).status_code == 404
