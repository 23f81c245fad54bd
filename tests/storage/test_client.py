"""The backend's storage client against a real storage server: every call, typed errors, retries."""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import hbp_nrp_backend.storage_client as storage_client_module
from hbp_nrp_backend.storage_client import (
    BACKOFF,
    StorageClient,
    StorageError,
    StorageNotFound,
    StorageUnauthorized,
    StorageUnavailable,
)

from .conftest import Storage

BLOB = os.urandom(300_000) + bytes(range(256))


def make_source(folder: Path) -> Path:
    """A nested tree with a binary file, an empty folder, odd names and files a clone must skip."""
    (folder / "sub" / "deeper" / "empty").mkdir(parents=True)
    (folder / "with space" / "x+y").mkdir(parents=True)
    (folder / "simulation_config.json").write_text('{"SimulationName": "Src"}')
    (folder / "main_script.py").write_text("print('hi')\n")
    (folder / "sub" / "model.bin").write_bytes(BLOB)
    (folder / "sub" / "deeper" / "a.txt").write_text("a")
    (folder / "with space" / "x+y" / "ü 1%.txt").write_text("odd")
    (folder / "old.log").write_text("skip")
    (folder / "2024-01-01_00-00-00_simulation_3.log.zip").write_bytes(b"skip")
    (folder / "sub" / "deep.log").write_text("skip")
    (folder / "sub" / ".main.swp").write_text("skip")
    (folder / "logs").mkdir()
    (folder / "logs" / "x.txt").write_text("skip")
    (folder / "sub" / "__pycache__").mkdir()
    (folder / "sub" / "__pycache__" / "m.pyc").write_bytes(b"skip")
    return folder


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")
    }


EXPECTED = {
    "simulation_config.json",
    "main_script.py",
    "sub",
    "sub/model.bin",
    "sub/deeper",
    "sub/deeper/a.txt",
    "sub/deeper/empty",
    "with space",
    "with space/x+y",
    "with space/x+y/ü 1%.txt",
}


@pytest.fixture
def client(storage: Storage) -> Iterator[StorageClient]:
    with StorageClient(storage.url, timeout=10) as instance:
        yield instance


@pytest.mark.parametrize("parallel", [1, 4])
def test_clone_round_trip(storage: Storage, client: StorageClient, tmp_path: Path, parallel: int) -> None:
    source = make_source(tmp_path / "src")
    name = f"roundtrip{parallel}"
    assert client.upload_experiment(storage.alice, name, source) == 11
    dest = tmp_path / "dest"
    files = client.clone_experiment(storage.alice, name, dest, parallel=parallel)
    copied = snapshot(dest)
    assert set(copied) == EXPECTED
    original = snapshot(source)
    for path in EXPECTED:
        assert copied[path] == original[path], path
    assert (dest / "sub" / "model.bin").read_bytes() == BLOB
    assert sorted(p.relative_to(dest).as_posix() for p in files) == sorted(
        p for p in EXPECTED if original[p] is not None
    )
    assert not [p for p in dest.rglob(".*")]  # no leftover temporaries


def test_original_base_url_form(storage: Storage, tmp_path: Path) -> None:
    """``http://<host>:<port>/storage`` (the original's form) works through the prefix rules."""
    with StorageClient(f"{storage.url}/storage/", timeout=10) as client:
        assert client.get_user(storage.alice)["id"] == "alice"
        client.create_experiment(storage.alice, "viaprefix")
        client.create_or_update(storage.alice, "viaprefix", "a/b.txt", b"b", "text/plain")
        client.clone_experiment(storage.alice, "viaprefix", tmp_path / "d")
        assert (tmp_path / "d" / "a" / "b.txt").read_bytes() == b"b"
        assert "viaprefix" in [e["id"] for e in client.list_experiments(storage.alice, None)]


def test_upload_logs_lands_at_experiment_root(
    storage: Storage, client: StorageClient, tmp_path: Path
) -> None:
    client.create_experiment(storage.alice, "withlogs")
    zip_path = tmp_path / "logs.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("simulation_7.log", "line\n")
    name = client.upload_logs(storage.alice, "withlogs", zip_path, 7)
    assert re.fullmatch(r"\d{8}T\d{6}Z_simulation_7\.log\.zip", name)
    assert client.get_file(storage.alice, "withlogs", name, by_name=True) == zip_path.read_bytes()
    assert [e["name"] for e in client.get_files_list(storage.alice, "withlogs")] == [name]
    fixed = client.upload_logs(storage.alice, "withlogs", zip_path, 8, now=lambda: 0.0)
    assert fixed == "19700101T000000Z_simulation_8.log.zip"  # ISO 8601 basic form, UTC
    # later clones leave the log zips out
    client.create_or_update(storage.alice, "withlogs", "main_script.py", b"pass")
    client.clone_experiment(storage.alice, "withlogs", tmp_path / "clone")
    assert sorted(os.listdir(tmp_path / "clone")) == ["main_script.py"]


def test_low_level_calls(storage: Storage, client: StorageClient, tmp_path: Path) -> None:
    token = storage.alice
    client.create_experiment(token, "lowlevel")
    assert client.create_or_update(token, "lowlevel", "f.txt", b"one") == 200
    client.create_or_update(token, "lowlevel", "f.txt", b"two", append=True)
    assert client.get_file(token, "lowlevel", "f.txt", by_name=True) == b"onetwo"
    assert client.get_file(token, "anything", "lowlevel/f.txt") == b"onetwo"
    assert client.create_folder(token, "lowlevel", "dir")["entity_type"] == "folder"
    assert client.create_folder(token, "lowlevel", "dir")["name"] == "dir"
    names = [e["name"] for e in client.get_files_list(token, "lowlevel")]
    assert names == ["f.txt"]
    assert [e["name"] for e in client.get_files_list(token, "lowlevel", folder=True)] == ["dir", "f.txt"]
    local = client.clone_file(token, "f.txt", "lowlevel", tmp_path)
    assert local == tmp_path / "f.txt" and local.read_bytes() == b"onetwo"
    assert client.clone_file(token, "f.tx", "lowlevel", tmp_path) is None
    assert client.get_folder_uuid_by_name(token, None, "lowlevel") == "lowlevel"
    assert client.get_folder_uuid_by_name(token, None, "lowlev") is None
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("z/inner.txt", "inner")
    assert client.create_and_extract_zip(token, "lowlevel", "x.zip", buffer.getvalue()) == 200
    assert client.get_file(token, "lowlevel%2Fz".replace("%2F", "/"), "inner.txt", by_name=True) == b"inner"
    assert client.delete_file(token, "lowlevel", "f.txt") == "f.txt"
    with pytest.raises(StorageNotFound):
        client.get_file(token, "lowlevel", "f.txt", by_name=True)
    exported = client.export_experiment(token, "lowlevel")
    with zipfile.ZipFile(io.BytesIO(exported)) as archive:
        assert "lowlevel/z/inner.txt" in archive.namelist()
        imported_zip = io.BytesIO()
        with zipfile.ZipFile(imported_zip, "w") as out:
            out.writestr("lowlevel/simulation_config.json", json.dumps({"SimulationName": "L"}))
            for info in archive.infolist():
                out.writestr(info, archive.read(info))
    result = client.import_experiment(token, imported_zip.getvalue())
    assert result["destFolderName"].startswith("lowlevel_")
    client.delete_experiment(token, result["destFolderName"])
    assert client.get_folder_uuid_by_name(token, None, result["destFolderName"]) is None


def test_errors_are_typed(storage: Storage, client: StorageClient, tmp_path: Path) -> None:
    with pytest.raises(StorageUnauthorized) as bad_token:
        client.get_user("wrong")
    assert str(bad_token.value) == "Could not verify auth token, status code 401"
    with pytest.raises(StorageUnauthorized) as unauthorized:
        client.list_experiments("wrong")
    assert str(unauthorized.value) == "Failed to communicate with the storage server, status code 401"
    client.create_experiment(storage.alice, "private_one")
    with pytest.raises(StorageUnauthorized):
        client.get_files_list(storage.bob, "private_one")
    with pytest.raises(StorageNotFound) as missing:
        client.clone_experiment(storage.alice, "no_such_experiment", tmp_path / "dest")
    assert missing.value.detail == "Experiment no_such_experiment not found"
    assert not (tmp_path / "dest").exists()
    with pytest.raises(StorageError) as conflict:
        client.create_experiment(storage.alice, "private_one")
    assert conflict.value.status_code == 409
    assert not isinstance(conflict.value, (StorageNotFound, StorageUnauthorized, StorageUnavailable))


class _RecordingTime:
    """Stands in for the ``time`` module of the storage client: records sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def test_unreachable_server_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    clock = _RecordingTime()
    monkeypatch.setattr(storage_client_module, "time", clock)
    client = StorageClient(f"http://127.0.0.1:{port}", timeout=2, backoff=(0.05, 0.1))
    with pytest.raises(StorageUnavailable) as error:
        client.get_user("t")
    assert isinstance(error.value, ConnectionError)
    assert clock.sleeps == [0.05, 0.1]  # three attempts, with both waits between them
    assert BACKOFF == (0.5, 1.0)


class ScriptedServer(ThreadingHTTPServer):
    """An HTTP server (not ours) answering a fixed list of statuses, to check retries."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                server: ScriptedServer = self.server  # type: ignore[assignment]
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                server.requests.append((self.command, self.path))
                status = server.statuses.pop(0) if server.statuses else 200
                body = b"[]" if status == 200 else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer([])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_5xx_is_retried_but_appends_are_not(scripted: ScriptedServer) -> None:
    client = StorageClient(f"http://127.0.0.1:{scripted.server_port}", timeout=5, backoff=(0.01, 0.02))
    scripted.statuses[:] = [503, 502]
    assert client.list_experiments("t") == []
    assert len(scripted.requests) == 3
    scripted.requests.clear()
    scripted.statuses[:] = [500, 500, 500]
    with pytest.raises(StorageUnavailable):
        client.get_files_list("t", "exp")
    assert len(scripted.requests) == 3
    scripted.requests.clear()
    scripted.statuses[:] = [503]
    with pytest.raises(StorageUnavailable):
        client.create_or_update("t", "exp", "log.txt", b"x", append=True)
    assert scripted.requests == [("POST", "/storage/exp/log.txt?append=true")]
    scripted.requests.clear()
    scripted.statuses[:] = [503]
    assert client.create_or_update("t", "exp", "a b/c%d", io.BytesIO(b"stream")) == 200
    assert [path for _, path in scripted.requests] == ["/storage/exp/a%20b/c%25d"] * 2
    scripted.requests.clear()
    scripted.statuses[:] = [204]
    with pytest.raises(StorageNotFound):
        client.get_file("t", "exp sub", "x", by_name=True)
    assert scripted.requests == [("GET", "/storage/exp%20sub/x?byname=true")]


class HostileServer(ThreadingHTTPServer):
    """A storage server (not ours) whose listing names leave the clone's destination folder."""

    def __init__(self, name: str, kind: str) -> None:
        listing = json.dumps([{"name": name, "type": kind, "size": 1, "uuid": f"exp/{name}"}]).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.endswith("/archive"):  # no archive route: the client lists and fetches
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = listing if "byname" not in self.path and self.path.count("/") == 2 else b"x"
                if self.path.count("/") == 2 and "exp" not in self.path:
                    body = b"[]"  # the listing of a hostile sub-folder is empty
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("../escaped.txt", "file"), ("..", "folder"), ("/tmp/abs", "file"), ("a/../../escaped", "file")],
)
def test_clone_refuses_listing_names_leaving_the_destination(tmp_path: Path, name: str, kind: str) -> None:
    server = HostileServer(name, kind)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = StorageClient(f"http://127.0.0.1:{server.server_port}", timeout=5, backoff=())
        dest = tmp_path / "inside" / "dest"
        dest.parent.mkdir()
        with pytest.raises(StorageError, match="name"):
            client.clone_experiment("t", "exp", dest)
        assert sorted(p.name for p in tmp_path.rglob("*")) == ["inside"]
    finally:
        server.shutdown()
        server.server_close()


def _tar(*members: tuple[str, bytes | None, bytes]) -> bytes:
    """A tar of ``(name, type, content)`` members (type: tarfile's type byte)."""
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, kind, content in members:
            info = tarfile.TarInfo(name)
            info.type = kind or tarfile.REGTYPE
            if info.type == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class ArchiveServer(ThreadingHTTPServer):
    """A server whose archive route answers ``body``."""

    def __init__(self, body: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.mark.parametrize(
    "body",
    [
        _tar(("../escaped.txt", None, b"x")),
        _tar(("a/../../escaped", None, b"x")),
        _tar(("/tmp/abs", None, b"x")),
        _tar(("link", b"2", b"")),
        _tar(("ok.txt", None, b"x" * 2000))[:1500],  # cut short
        b"not a tar at all" * 100,
    ],
)
def test_clone_archive_refuses_hostile_or_broken_archives(tmp_path: Path, body: bytes) -> None:
    server = ArchiveServer(body)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = StorageClient(f"http://127.0.0.1:{server.server_port}", timeout=5, backoff=())
        dest = tmp_path / "inside" / "dest"
        dest.parent.mkdir()
        with pytest.raises(StorageError):
            client.clone_experiment("t", "exp", dest)
        assert sorted(p.name for p in tmp_path.rglob("*")) == ["inside"]
    finally:
        server.shutdown()
        server.server_close()
