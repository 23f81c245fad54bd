"""Every route of the storage server, through a real server process."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest
import requests

from .conftest import Storage, start_storage

PREFIXES = ["", "/storage", "/proxy"]


def error_of(response: requests.Response) -> dict:
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"message", "type", "data"}
    return body


def test_health_needs_no_token(storage: Storage) -> None:
    response = requests.get(f"{storage.url}/health")
    assert response.status_code == 200
    assert response.json() == {"service": "healthy"}


def test_health_unavailable_without_root(tmp_path) -> None:
    root = tmp_path / "root"
    server = start_storage(root)
    try:
        assert requests.get(f"{server.url}/health").status_code == 200
        os.rename(root, tmp_path / "gone")
        response = requests.get(f"{server.url}/health")
        assert response.status_code == 503
        assert response.json() == {"service": "unavailable"}
    finally:
        server.stop()


def test_health_with_uri_characters_in_the_root_path(tmp_path) -> None:
    """The database is opened read-only through an SQLite URI: ``?``, ``#``, ``%`` must not break it."""
    server = start_storage(tmp_path / "a?b#c%20d")
    try:
        assert requests.get(f"{server.url}/health").status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize("prefix", PREFIXES)
def test_identity_me(storage: Storage, prefix: str) -> None:
    response = requests.get(
        f"{storage.url}{prefix}/identity/me", headers={"Authorization": f"Bearer {storage.bob}"}
    )
    assert response.status_code == 200
    assert response.json() == {"id": "bob", "displayName": "bob"}


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Bearer not-a-token", "Bearer no-token"],
)
def test_missing_or_bad_token_is_401_json(storage: Storage, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for path in ("/identity/me", "/storage/experiments", "/storage/storage/experiments", "/storage/x/y"):
        response = requests.get(f"{storage.url}{path}", headers=headers)
        assert response.status_code == 401, path
        assert error_of(response) == {
            "message": "Authentication required",
            "type": "Client error",
            "data": None,
        }


def test_any_scheme_word_is_accepted(storage: Storage) -> None:
    response = requests.get(f"{storage.url}/identity/me", headers={"Authorization": f"Token {storage.alice}"})
    assert response.json()["id"] == "alice"


def test_options_preflight_and_cors(storage: Storage, alice: requests.Session) -> None:
    response = requests.options(f"{storage.url}/storage/experiments")
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "uuid" in response.headers["Access-Control-Expose-Headers"]
    assert alice.get(f"{storage.url}/storage/experiments").headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_acceptance_create_upload_list_download(
    storage: Storage, alice: requests.Session, prefix: str
) -> None:
    """Create, upload, list, download (by uuid and by name) and delete, under every prefix."""
    url = f"{storage.url}{prefix}/storage"
    name = f"demo{len(prefix)}"
    assert alice.put(f"{url}/{name}").json() == {"uuid": name}
    config = b'{"SimulationName": "Demo"}'
    script = b"print('hello')\n"
    assert alice.post(
        f"{url}/{name}/simulation_config.json", data=config, headers={"Content-Type": "text/plain"}
    ).ok
    assert alice.post(f"{url}/{name}/main_script.py", data=script).status_code == 200
    assert alice.post(f"{url}/{name}/sub/x.py", data=b"x = 1\n").status_code == 200

    listing = alice.get(f"{url}/{name}").json()
    assert sorted((e["name"], e["type"]) for e in listing) == [
        ("main_script.py", "file"),
        ("simulation_config.json", "file"),
        ("sub", "folder"),
    ]
    by_name = {e["name"]: e for e in listing}
    assert by_name["main_script.py"]["size"] == len(script)
    assert by_name["main_script.py"]["uuid"] == f"{name}/main_script.py"
    assert by_name["main_script.py"]["modifiedOn"].endswith("Z")
    sub = alice.get(f"{url}/{name}%2Fsub").json()
    assert [(e["name"], e["uuid"]) for e in sub] == [("x.py", f"{name}/sub/x.py")]

    response = alice.get(f"{url}/{name}/main_script.py", params={"byname": "true"})
    assert response.content == script
    assert response.headers["uuid"] == f"{name}/main_script.py"
    assert "attachment" in response.headers["Content-Disposition"]
    assert alice.get(f"{url}/{name}%2Fsub/x.py?byname=true").content == b"x = 1\n"
    assert alice.get(f"{url}/{name}/{name}%2Fsub%2Fx.py").content == b"x = 1\n"
    assert alice.get(f"{url}/anything/{name}%2Fsub%2Fx.py?byname=false").content == b"x = 1\n"
    # real slashes work as the same nested path
    assert alice.get(f"{url}/{name}/sub/x.py?byname=true").content == b"x = 1\n"

    missing = alice.get(f"{url}/{name}/nope.py?byname=true")
    assert missing.status_code == 404
    assert error_of(missing)["message"] == "File not found"


def test_binary_bodies_are_stored_byte_for_byte(storage: Storage, alice: requests.Session, exp: str) -> None:
    blob = bytes(range(256)) * 300 + b"\x00\xff\r\n"
    for name, ctype in [
        ("a.log.zip", "application/octet-stream"),
        ("b.bin", "application/json"),
        ("c.bin", "text/plain"),
        ("d.bin", "application/x-www-form-urlencoded"),
    ]:
        assert alice.post(
            f"{storage.url}/storage/{exp}/{name}", data=blob, headers={"Content-Type": ctype}
        ).ok
        assert alice.get(f"{storage.url}/storage/{exp}/{name}?byname=true").content == blob, name


def test_append_concatenates(storage: Storage, alice: requests.Session, exp: str) -> None:
    url = f"{storage.url}/storage/{exp}/log.txt"
    assert alice.post(url, data=b"one\n").ok
    assert alice.post(url, params={"append": "true"}, data=b"two\n").ok
    assert alice.post(url, params={"append": "true"}, data=b"\x00three").ok
    assert alice.get(url, params={"byname": "true"}).content == b"one\ntwo\n\x00three"
    assert alice.post(url, data=b"over").ok
    assert alice.get(url, params={"byname": "true"}).content == b"over"


def test_special_characters_in_names(storage: Storage, alice: requests.Session, exp: str) -> None:
    """A ``+`` stays a ``+``; a space arrives as ``%20``; non-ASCII names survive."""
    from urllib.parse import quote

    for name in ["a+b.txt", "with space.txt", "ünïcode.txt", "50%.txt"]:
        url = f"{storage.url}/storage/{exp}/{quote(name, safe='')}"
        assert alice.post(url, data=name.encode()).ok
        assert alice.get(url, params={"byname": "true"}).content == name.encode()
    names = {e["name"] for e in alice.get(f"{storage.url}/storage/{exp}").json()}
    assert names == {"a+b.txt", "with space.txt", "ünïcode.txt", "50%.txt"}


def test_folder_create_and_delete(storage: Storage, alice: requests.Session, exp: str) -> None:
    url = f"{storage.url}/storage/{exp}"
    created = alice.post(f"{url}/empty", params={"type": "folder"})
    assert created.json() == {"uuid": f"{exp}/empty", "entity_type": "folder", "name": "empty"}
    assert alice.post(f"{url}/empty", params={"type": "folder"}).ok  # existing is fine
    assert alice.post(f"{url}/a/b/c.txt", data=b"c").ok
    assert {e["name"] for e in alice.get(url).json()} == {"empty", "a"}
    assert alice.delete(f"{url}/{exp}%2Fa", params={"type": "folder"}).status_code == 200
    assert {e["name"] for e in alice.get(url).json()} == {"empty"}
    assert alice.delete(f"{url}/{exp}%2Fa", params={"type": "folder"}).status_code == 404


def test_delete_file_forms(storage: Storage, alice: requests.Session, exp: str) -> None:
    url = f"{storage.url}/storage/{exp}"
    for name in ("one.txt", "two.txt", "three.txt", "sub/four.txt"):
        assert alice.post(f"{url}/{name}", data=b"x").ok
    assert alice.delete(f"{url}/one.txt", params={"byname": "true"}).status_code == 200
    # the original backend's delete_file: DELETE /storage/<quote("exp/file")> deletes only the file
    assert alice.delete(f"{storage.url}/storage/{exp}%2Ftwo.txt").status_code == 200
    assert alice.delete(f"{url}/{exp}%2Fthree.txt").status_code == 200
    assert alice.delete(f"{url}/sub/four.txt", params={"byname": "true"}).status_code == 200
    assert [e["name"] for e in alice.get(url).json()] == ["sub"]
    missing = alice.delete(f"{url}/one.txt", params={"byname": "true"})
    assert missing.status_code == 404 and error_of(missing)["message"] == "File not found"


def test_delete_experiment(storage: Storage, alice: requests.Session, exp: str) -> None:
    assert alice.post(f"{storage.url}/storage/{exp}/deep/file.txt", data=b"x").ok
    bob = storage.session(storage.bob)
    assert bob.delete(f"{storage.url}/storage/{exp}").status_code == 403
    assert alice.delete(f"{storage.url}/storage/{exp}").status_code == 200
    assert not (storage.root / exp).exists()
    assert alice.get(f"{storage.url}/storage/{exp}").status_code == 404
    assert exp not in [e["id"] for e in alice.get(f"{storage.url}/storage/experiments").json()]


def test_unknown_experiment_is_404_and_others_are_403(
    storage: Storage, alice: requests.Session, exp: str
) -> None:
    response = alice.get(f"{storage.url}/storage/no_such_exp")
    assert response.status_code == 404
    assert error_of(response)["message"] == "Experiment no_such_exp not found"
    assert alice.post(f"{storage.url}/storage/no_such_exp/a.txt", data=b"x").status_code == 404
    bob = storage.session(storage.bob)
    assert bob.get(f"{storage.url}/storage/{exp}").status_code == 403
    assert bob.post(f"{storage.url}/storage/{exp}/a.txt", data=b"x").status_code == 403
    assert (
        error_of(bob.get(f"{storage.url}/storage/{exp}/a.txt?byname=true"))["message"]
        == "Authentication error"
    )


def test_reserved_and_existing_names(storage: Storage, alice: requests.Session, exp: str) -> None:
    """Route names and hidden names cannot be experiments; an existing name is a conflict."""
    for name in [
        "experiments",
        "clone",
        "importExperiment",
        "identity",
        "storage",
        "proxy",
        "FS_db",
        ".hidden",
    ]:
        response = alice.put(f"{storage.url}/storage/{name}")
        assert response.status_code == 400, name
        assert error_of(response)["type"] == "Client error"
    conflict = alice.put(f"{storage.url}/storage/{exp}")
    assert conflict.status_code == 409
    assert error_of(conflict)["message"] == "Experiment already exists"


def test_experiments_listing(storage: Storage, alice: requests.Session, exp: str) -> None:
    config = {"SimulationName": "Listed", "cloneDate": "2024-01-02T03:04:05", "SimulationTimeout": 5}
    assert alice.post(f"{storage.url}/storage/{exp}/simulation_config.json", data=json.dumps(config)).ok
    items = {e["id"]: e for e in alice.get(f"{storage.url}/storage/experiments").json()}
    item = items[exp]
    assert item["uuid"] == item["name"] == exp and item["owned"] is True and item["private"] is True
    assert item["joinableServers"] == []
    assert item["configuration"] == {
        "maturity": "production",
        "experimentId": f"{exp}/simulation_config.json",
        "path": exp,
        "configFile": "simulation_config.json",
        "SimulationName": "Listed",
        "cloneDate": "2024-01-02 03:04:05",
        "SimulationTimeout": 5,
    }
    filtered = alice.get(f"{storage.url}/storage/experiments", params={"filter": exp}).json()
    assert [e["id"] for e in filtered] == [exp]
    # bob sees neither alice's private experiment nor, with all=true, anything he cannot own
    bob = storage.session(storage.bob)
    assert exp not in [e["id"] for e in bob.get(f"{storage.url}/storage/experiments").json()]
    everything = {e["id"]: e for e in bob.get(f"{storage.url}/storage/experiments?all=true").json()}
    assert everything[exp]["owned"] is False
    assert exp not in [e["id"] for e in bob.get(f"{storage.url}/storage/experiments?all=false").json()]


def test_listing_of_corrupted_and_missing_config(storage: Storage, alice: requests.Session, exp: str) -> None:
    items = {e["id"]: e for e in alice.get(f"{storage.url}/storage/experiments").json()}
    assert items[exp]["configuration"]["SimulationName"] == exp
    assert items[exp]["configuration"]["corrupted"] is True
    assert alice.post(f"{storage.url}/storage/{exp}/simulation_config.json", data=b"{not json").ok
    items = {e["id"]: e for e in alice.get(f"{storage.url}/storage/experiments").json()}
    assert items[exp]["configuration"]["SimulationName"] == "Experiment with corrupted simulation_config.json"


def test_unregistered_folders_and_internal_entries_are_invisible(
    storage: Storage, alice: requests.Session
) -> None:
    (storage.root / "stray").mkdir(exist_ok=True)
    (storage.root / "FS_db").mkdir(exist_ok=True)
    ids = [e["id"] for e in alice.get(f"{storage.url}/storage/experiments").json()]
    assert "stray" not in ids and "FS_db" not in ids
    assert alice.get(f"{storage.url}/storage/stray").status_code == 404
    all_ids = [e["id"] for e in alice.get(f"{storage.url}/storage/experiments?all=true").json()]
    assert "stray" in all_ids and "FS_db" not in all_ids


def make_zip(entries: dict[str, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            if data is None:
                archive.writestr(zipfile.ZipInfo(name), b"")
            else:
                archive.writestr(name, data)
    return buffer.getvalue()


def test_import_and_export(storage: Storage, alice: requests.Session) -> None:
    """A zip with one top folder imports as a new experiment and exports back as a zip (owner only)."""
    body = make_zip(
        {
            "foo/": None,
            "foo/simulation_config.json": b'{"SimulationName": "Foo"}',
            "foo/main_script.py": b"pass\n",
            "foo/sub/": None,
            "foo/sub/data.bin": bytes(range(256)),
            "foo/empty/": None,
        }
    )
    response = alice.post(
        f"{storage.url}/storage/importExperiment",
        data=body,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    dest = result["destFolderName"]
    assert result["zipBaseFolderName"] == "foo" and dest.startswith("foo_")
    assert result["newName"].endswith(" Foo") and result["newName"][:4].isdigit()
    assert {e["name"] for e in alice.get(f"{storage.url}/storage/{dest}").json()} == {
        "simulation_config.json",
        "main_script.py",
        "sub",
        "empty",
    }
    config = alice.get(f"{storage.url}/storage/{dest}/simulation_config.json?byname=true").json()
    assert config["SimulationName"] == result["newName"]

    exported = alice.get(f"{storage.url}/storage/experiments/{dest}/zip")
    assert exported.status_code == 200
    assert f"{dest}.zip" in exported.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        names = set(archive.namelist())
        assert {n.split("/")[0] for n in names} == {dest}
        assert {f"{dest}/sub/data.bin", f"{dest}/empty/", f"{dest}/main_script.py"} <= names
        assert archive.read(f"{dest}/sub/data.bin") == bytes(range(256))
    bob = storage.session(storage.bob)
    assert bob.get(f"{storage.url}/storage/experiments/{dest}/zip").status_code == 403

    second = alice.post(f"{storage.url}/storage/importExperiment", data=body).json()
    assert second["destFolderName"] != dest


@pytest.mark.parametrize(
    "entries",
    [
        {"a/simulation_config.json": b"{}", "b/simulation_config.json": b"{}"},
        {"simulation_config.json": b"{}"},
        {"a/": None},
        {"a/simulation_config.json": b"{}", "top.txt": b"x"},
    ],
)
def test_import_needs_exactly_one_top_folder(storage: Storage, alice: requests.Session, entries) -> None:
    before = set(os.listdir(storage.root))
    response = alice.post(f"{storage.url}/storage/importExperiment", data=make_zip(entries))
    assert response.status_code == 400
    assert error_of(response)["type"] == "Client error"
    assert set(os.listdir(storage.root)) == before


def test_zip_upload_extracts_into_experiment(storage: Storage, alice: requests.Session, exp: str) -> None:
    body = make_zip({"root.txt": b"r", "d/": None, "d/e/f.txt": b"f", "empty/": None})
    response = alice.post(f"{storage.url}/storage/{exp}/ignored.zip", params={"type": "zip"}, data=body)
    assert response.status_code == 200, response.text
    assert {e["name"] for e in alice.get(f"{storage.url}/storage/{exp}").json()} == {"root.txt", "d", "empty"}
    assert alice.get(f"{storage.url}/storage/{exp}%2Fd%2Fe/f.txt?byname=true").content == b"f"


def test_template_clone(storage: Storage, alice: requests.Session) -> None:
    """Cloning a bundled template makes a new experiment from it."""
    response = alice.post(
        f"{storage.url}/storage/clone",
        data=json.dumps({"expPath": "tf_exchange/simulation_config_grpc.json"}),
    )
    assert response.status_code == 200, response.text
    name = response.text
    assert name.startswith("tf_exchange_")
    top = {e["name"]: e["type"] for e in alice.get(f"{storage.url}/storage/{name}").json()}
    assert top == {
        "simulation_config.json": "file",
        "main_script.py": "file",
        "Makefile": "file",
        "resources": "folder",
    }
    config = alice.get(f"{storage.url}/storage/{name}/simulation_config.json?byname=true").json()
    assert config["variant"] == "grpc"
    assert config["cloneDate"][:2] == "20" and "T" in config["cloneDate"]
    assert config["SimulationName"] == f"{config['cloneDate']} tf_exchange"
    resources = {e["name"] for e in alice.get(f"{storage.url}/storage/{name}%2Fresources").json()}
    assert resources == {"nested", "empty"}
    assert (
        alice.get(f"{storage.url}/storage/{name}%2Fresources%2Fnested/model.json?byname=true").content
        == b"{}"
    )
    owned = {e["id"]: e["owned"] for e in alice.get(f"{storage.url}/storage/experiments").json()}
    assert owned[name] is True

    again = alice.post(f"{storage.url}/storage/clone", json={"expPath": "tf_exchange/simulation_config.json"})
    assert again.text != name and again.text.startswith("tf_exchange_")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[]", 400),
        (b'{"expPath": "../etc/passwd"}', 400),
        (b'{"expPath": "tf_exchange/../../x.json"}', 400),
        (b'{"expPath": "nope/simulation_config.json"}', 404),
    ],
)
def test_template_clone_bad_input(
    storage: Storage, alice: requests.Session, body: bytes, status: int
) -> None:
    before = set(os.listdir(storage.root))
    response = alice.post(f"{storage.url}/storage/clone", data=body)
    assert response.status_code == status
    error_of(response)
    assert set(os.listdir(storage.root)) == before


def test_experiment_clone_skips_logs(storage: Storage, alice: requests.Session, exp: str) -> None:
    url = f"{storage.url}/storage/{exp}"
    files = {
        "simulation_config.json": b'{"SimulationName": "Src"}',
        "keep.py": b"k",
        "old.log": b"l",
        "2024-01-01_00-00-00_simulation_1.log.zip": b"z",
        "logs/a.txt": b"a",
        "csv_records/r.csv": b"c",
        "sub/__pycache__/m.pyc": b"p",
        "sub/deep.log": b"l",
        "sub/keep.txt": b"s",
    }
    for name, data in files.items():
        assert alice.post(f"{url}/{name}", data=data).ok
    assert alice.post(f"{url}/empty", params={"type": "folder"}).ok
    response = alice.post(f"{storage.url}/storage/clone/{exp}")
    assert response.status_code == 200
    clone = response.json()
    assert clone["originalExp"] == exp and clone["clonedExp"] == f"{exp}_0"
    copy = storage.root / clone["clonedExp"]
    found = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*"))
    assert found == ["empty", "keep.py", "simulation_config.json", "sub", "sub/keep.txt"]
    assert "cloneDate" in json.loads((copy / "simulation_config.json").read_text())
    assert storage.session(storage.bob).post(f"{storage.url}/storage/clone/{exp}").status_code == 403
    assert alice.post(f"{storage.url}/storage/clone/missing_exp").status_code == 404


def test_clonenew_is_501(storage: Storage, alice: requests.Session) -> None:
    response = alice.post(f"{storage.url}/storage/clonenew", json={})
    assert response.status_code == 501
    assert error_of(response)["type"] == "Server Error"


def test_unknown_routes_are_json_404(storage: Storage, alice: requests.Session) -> None:
    for path in ("/nothing", "/storage", "/identity/me/x/y"):
        response = alice.get(f"{storage.url}{path}")
        assert response.status_code == 404, path
        error_of(response)


def test_filter_decoded_once_or_twice(storage: Storage, alice: requests.Session) -> None:
    """The original backend's client double-encodes ``filter``; both forms match exactly."""
    assert alice.put(f"{storage.url}/storage/a%20b").ok
    for raw in ("a%20b", "a%2520b"):
        items = alice.get(f"{storage.url}/storage/experiments?filter={raw}").json()
        assert [e["id"] for e in items] == ["a b"], raw
    assert alice.get(f"{storage.url}/storage/experiments?filter=a").json() == []


def test_identity_of_other_users(storage: Storage, alice: requests.Session) -> None:
    assert alice.get(f"{storage.url}/identity/bob").json() == {"id": "bob", "displayName": "bob"}
    assert alice.get(f"{storage.url}/identity/nobody").status_code == 404


def test_default_templates_are_the_source_tree_experiments() -> None:
    from pathlib import Path

    from hbp_nrp_storage.templates import default_templates_dir

    repo_experiments = Path(__file__).resolve().parents[2] / "experiments"
    assert default_templates_dir() == (repo_experiments if repo_experiments.is_dir() else None)
