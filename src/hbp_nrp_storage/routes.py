"""The storage API: one dispatcher over raw-path segments.

Werkzeug's URL map matches decoded paths, where ``exp%2Fsub`` and ``exp/sub`` look the same; the
API gives them different meanings (``GET /storage/exp%2Fsub`` lists the folder ``sub`` of ``exp``,
``GET /storage/exp/sub`` downloads the file ``sub``), so routing here works on the segments of the
raw path.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote

from flask import Request, Response, jsonify, send_file

from hbp_nrp_commons.http_edge import MalformedAuthorization, parse_bearer

from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    NotImplementedYet,
    PayloadTooLarge,
    Unauthorized,
)
from .paths import (
    RAW_PATH_KEY,
    check_experiment_name,
    join_parts,
    relative_parts,
    split_raw_path,
    strip_prefix,
)
from .store import (
    CONFIG_NAME,
    ExperimentStore,
    clone_skip,
    copy_tree,
    load_config_file,
    retimestamp,
    timestamp_now,
    write_config,
)
from .templates import TemplateCatalogue
from .users import ExperimentRecord, UserStore
from .zips import ZipLimits, check_zip, extract_to_staging, merge_into, open_zip, write_zip

log = logging.getLogger(__name__)

HIDDEN_FROM_LISTINGS = frozenset({"robots", "brains", "environments"})
SPOOL_IN_MEMORY = 16 * 1024 * 1024


@dataclass
class StorageApi:
    """Request handling of one storage root.

    Args:
        store: the experiment folders.
        users: users, tokens and experiment records.
        templates: the template catalogue.
        max_upload: largest accepted request body in bytes.
        zip_limits: limits for zip uploads and imports.
    """

    store: ExperimentStore
    users: UserStore
    templates: TemplateCatalogue
    max_upload: int
    zip_limits: ZipLimits

    # entry point

    def dispatch(self, request: Request) -> Response:
        """Answer one request; raises :class:`~hbp_nrp_storage.errors.StorageServerError` subclasses."""
        method = request.method
        if method == "OPTIONS":
            return Response(status=204)
        segments = strip_prefix(split_raw_path(request.environ[RAW_PATH_KEY]))
        if segments == ["health"] and method in ("GET", "HEAD"):
            return self.health()
        user = self.authenticate(request)
        head = segments[0] if segments else ""
        if head == "identity" and len(segments) == 2 and method == "GET":
            return self.identity(user, segments[1])
        if head == "storage" and len(segments) >= 2:
            return self._storage(request, user, segments[1:])
        raise NotFound("Not found")

    def _storage(self, request: Request, user: str, rest: list[str]) -> Response:
        method = request.method
        first = rest[0]
        if first == "experiments":
            if len(rest) == 1 and method == "GET":
                return self.list_experiments(request, user)
            if len(rest) == 3 and rest[2] == "zip" and method == "GET":
                return self.export_zip(user, rest[1])
        if method == "POST" and len(rest) == 1 and first == "importExperiment":
            return self.import_experiment(request, user)
        if method == "POST" and first == "clone":
            if len(rest) == 1:
                return self.clone_template(request, user)
            if len(rest) == 2:
                return self.clone_experiment(user, rest[1])
        if method == "POST" and len(rest) == 1 and first in ("clonenew", "scanStorage"):
            raise NotImplementedYet(f"{first} is not implemented")
        if len(rest) == 1:
            if method == "GET":
                return self.list_folder(user, first)
            if method == "PUT":
                return self.create_experiment(user, first)
            if method == "DELETE":
                return self.delete_experiment(user, first)
        else:
            if method == "GET":
                return self.download(request, user, rest)
            if method == "POST":
                return self.upload(request, user, rest)
            if method == "DELETE":
                return self.delete(request, user, rest)
        raise NotFound("Not found")

    # authentication and access

    def authenticate(self, request: Request) -> str:
        """The user name of the request's token: only ``Authorization: Bearer <one token>``.

        Raises:
            Unauthorized: missing header, another scheme (``Basic``), no or several tokens,
                unknown, revoked or expired token.
        """
        try:
            token = parse_bearer(request.headers.get("Authorization"))
        except MalformedAuthorization as exc:
            raise Unauthorized() from exc
        if token is None:
            raise Unauthorized()
        user = self.users.user_for_token(token)
        if user is None:
            raise Unauthorized()
        return user

    def experiment(self, name: str, user: str, access: str = "read") -> ExperimentRecord:
        """The record of experiment ``name`` after checking ``access`` (read, write or admin).

        Raises:
            NotFound: no folder or no record (unregistered folders are invisible).
            Forbidden: the user may not do this.
        """
        record = self.users.get_experiment(name)
        if record is None or not self.store.exists(name):
            if record is not None:
                self._drop_stale_record(name)
            raise NotFound(f"Experiment {name} not found")
        allowed = {"read": record.can_read, "write": record.can_write, "admin": record.can_admin}[access]
        if not allowed(user):
            raise Forbidden()
        return record

    # identity and health

    def health(self) -> Response:
        try:
            os.listdir(self.store.root)
            self.users.check()
        except Exception:  # noqa: BLE001 - any failure means unavailable
            log.warning("health check failed", exc_info=True)
            response = jsonify({"service": "unavailable"})
            response.status_code = 503
            return response
        return jsonify({"service": "healthy"})

    def identity(self, user: str, name: str) -> Response:
        target = user if name == "me" else name
        if not self.users.user_exists(target):
            raise NotFound(f"User {target} not found")
        return jsonify({"id": target, "displayName": target})

    # experiments

    def list_experiments(self, request: Request, user: str) -> Response:
        wanted = request.args.get("filter")
        names_wanted = {wanted, unquote(wanted)} if wanted is not None else None
        list_all = request.args.get("all") == "true"
        folders = set(self.store.folders())
        records: dict[str, ExperimentRecord] = {}
        for record in self.users.experiments():
            if record.name in folders or self.store.exists(record.name):
                folders.add(record.name)  # created since the folder scan
                records[record.name] = record
            else:
                self._drop_stale_record(record.name)
        if list_all:
            names = sorted(folders)
        else:
            names = sorted(name for name, record in records.items() if record.can_read(user))
        items = []
        for name in names:
            if name in HIDDEN_FROM_LISTINGS or (names_wanted is not None and name not in names_wanted):
                continue
            listed = records.get(name)
            items.append(
                {
                    "uuid": name,
                    "name": name,
                    "id": name,
                    "owned": listed is not None and listed.owner == user,
                    "private": True,
                    "joinableServers": [],
                    "configuration": self._configuration(name),
                }
            )
        return jsonify(items)

    def _configuration(self, name: str) -> dict[str, Any]:
        base: dict[str, Any] = {
            "maturity": "production",
            "experimentId": f"{name}/{CONFIG_NAME}",
            "path": name,
            "configFile": CONFIG_NAME,
        }
        try:
            config = self.store.read_config(name)
        except ValueError:
            return {
                **base,
                "SimulationName": "Experiment with corrupted simulation_config.json",
                "corrupted": True,
            }
        if config is None:
            return {**base, "SimulationName": name, "corrupted": True}
        merged = {**base, **config}
        if isinstance(merged.get("cloneDate"), str):
            merged["cloneDate"] = merged["cloneDate"].replace("T", " ")
        if not isinstance(merged.get("SimulationName"), str):
            merged["SimulationName"] = name
        return merged

    def create_experiment(self, user: str, name: str) -> Response:
        check_experiment_name(name)
        with self.store.naming():
            if self.store.exists(name):
                raise Conflict("Experiment already exists")
            self.store.create_empty(name)
            self.users.add_experiment(name, user)
        return jsonify({"uuid": name})

    def delete_experiment(self, user: str, name: str) -> Response:
        if "/" in name:  # the original backend's delete_file: DELETE /storage/<quote("exp/file")>
            parts = relative_parts(name)
            self.experiment(parts[0], user, "write")
            if len(parts) == 1:
                raise BadRequest("Invalid path")
            self.store.delete_file(parts)
            return Response(status=200)
        relative_parts(name)
        self.experiment(name, user, "admin")
        # folder and record go together, so a PUT of the same name in between keeps its record
        with self.store.naming():
            doomed = self.store.detach_folder([name])
            self.users.remove_experiment(name)
        shutil.rmtree(doomed, ignore_errors=True)
        return Response(status=200)

    # files

    def list_folder(self, user: str, folder: str) -> Response:
        parts = relative_parts(folder)
        self.experiment(parts[0], user, "read")
        return jsonify(self.store.list_folder(parts))

    def download(self, request: Request, user: str, rest: list[str]) -> Response:
        if request.args.get("byname") == "true":
            parts = join_parts(*rest)
        else:
            parts = join_parts(*rest[1:])
        self.experiment(parts[0], user, "read")
        if len(parts) < 2:
            raise NotFound("File not found")
        path = self.store.file(parts)
        mimetype = mimetypes.guess_type(path.name)[0] or "text/plain"
        # a header value cannot hold control characters, which file names can (an uploaded "a%0Db")
        download_name = "".join("_" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in path.name)
        response = send_file(path, mimetype=mimetype, as_attachment=True, download_name=download_name)
        response.headers["uuid"] = _header_safe("/".join(parts))
        return response

    def upload(self, request: Request, user: str, rest: list[str]) -> Response:
        parts = join_parts(*rest)
        self.experiment(parts[0], user, "write")
        kind = request.args.get("type")
        self._check_length(request)
        if kind == "folder":
            self.store.make_folder(parts)
            return jsonify({"uuid": "/".join(parts), "entity_type": "folder", "name": parts[-1]})
        if kind == "zip":
            target_parts = relative_parts(rest[0])
            target = self.store.path(target_parts)
            if not target.is_dir():
                raise NotFound("Folder not found")
            with self._spooled_body(request) as body:
                archive = open_zip(body)
                with archive:
                    entries = check_zip(archive, self.zip_limits)
                    staging = extract_to_staging(archive, entries, target)
            merge_into(staging, target, self.store.root)
            return Response(status=200)
        self.store.write(
            parts, request.stream, append=request.args.get("append") == "true", limit=self.max_upload
        )
        return Response(status=200)

    def delete(self, request: Request, user: str, rest: list[str]) -> Response:
        if request.args.get("type") == "folder":
            parts = join_parts(*rest[1:])
            if len(parts) == 1:
                return self.delete_experiment(user, parts[0])
            self.experiment(parts[0], user, "write")
            self.store.delete_folder(parts)
            return Response(status=200)
        parts = join_parts(*rest) if request.args.get("byname") == "true" else join_parts(*rest[1:])
        self.experiment(parts[0], user, "write")
        if len(parts) < 2:
            raise BadRequest("Invalid path: name a file inside the experiment")
        self.store.delete_file(parts)
        return Response(status=200)

    # cloning, import and export

    def clone_template(self, request: Request, user: str) -> Response:
        body = self._json_body(request)
        template_id = body.get("expPath") if isinstance(body, dict) else None
        if not isinstance(template_id, str):
            raise BadRequest('Expected a JSON object {"expPath": "<folder>/<config>.json"}')
        folder, config_name = self.templates.resolve(template_id)
        staging = self.store.staging()
        try:

            def skip(rel: Path, is_dir: bool) -> bool:
                return not is_dir and rel.parent == Path(".") and rel.suffix == ".json"

            copy_tree(folder, staging, skip)
            config = load_config_file(folder / config_name)
            stamp = timestamp_now()
            config["cloneDate"] = stamp
            config["SimulationName"] = retimestamp(str(config.get("SimulationName") or folder.name), stamp)
            write_config(staging / CONFIG_NAME, config)
            name = self._publish(staging, folder.name, user)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Response(name, status=200, mimetype="text/plain")

    def clone_experiment(self, user: str, source: str) -> Response:
        relative_parts(source)
        self.experiment(source, user, "read")
        staging = self.store.staging()
        try:
            copy_tree(self.store.root / source, staging, clone_skip)
            config_path = staging / CONFIG_NAME
            if config_path.is_file():
                try:
                    config = load_config_file(config_path)
                except BadRequest:
                    log.warning("clone of %s: unreadable %s kept as is", source, CONFIG_NAME)
                else:
                    config["cloneDate"] = timestamp_now()
                    write_config(config_path, config)
            name = self._publish(staging, source, user)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return jsonify({"clonedExp": name, "originalExp": source})

    def import_experiment(self, request: Request, user: str) -> Response:
        self._check_length(request)
        with self._spooled_body(request) as body:
            archive = open_zip(body)
            with archive:
                entries = check_zip(archive, self.zip_limits)
                tops = {entry.parts[0] for entry in entries}
                if len(tops) != 1 or any(len(e.parts) == 1 and not e.is_dir for e in entries):
                    raise BadRequest(
                        "The zip must contain exactly one top-level folder holding the experiment, "
                        f"found {len(tops)} top-level entries"
                    )
                top = tops.pop()
                if not any(len(entry.parts) > 1 for entry in entries):
                    raise BadRequest(f"The zip's top-level folder {top} is empty")
                staging = extract_to_staging(archive, entries, self.store.root, strip=1)
        try:
            config = load_config_file(staging / CONFIG_NAME)
            new_name = retimestamp(str(config.get("SimulationName") or top), timestamp_now())
            config["SimulationName"] = new_name
            write_config(staging / CONFIG_NAME, config)
            name = self._publish(staging, top, user)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return jsonify(
            {
                "message": "The experiment folder has been successfully imported",
                "zipBaseFolderName": top,
                "destFolderName": name,
                "newName": new_name,
            }
        )

    def export_zip(self, user: str, name: str) -> Response:
        relative_parts(name)
        self.experiment(name, user, "admin")
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - closed by the response
        write_zip(self.store.root / name, name, spool)
        spool.seek(0)
        return send_file(spool, mimetype="application/zip", as_attachment=True, download_name=f"{name}.zip")

    # helpers

    def _drop_stale_record(self, name: str) -> None:
        """Remove the record of a vanished folder; checked again under the naming lock, because a
        create or publish makes the folder first and the record next, both under that lock."""
        with self.store.naming():
            if not self.store.exists(name):
                self.users.remove_experiment(name)

    def _publish(self, staging: Path, base: str, user: str) -> str:
        with self.store.naming():
            taken = [record.name for record in self.users.experiments()]
            name = check_experiment_name(self.store.new_name(base, taken))
            self.store.publish(staging, name)
            self.users.add_experiment(name, user)
        return name

    def _check_length(self, request: Request) -> None:
        if request.content_length is not None and request.content_length > self.max_upload:
            raise PayloadTooLarge(f"Request body exceeds the limit of {self.max_upload} bytes")

    def _spooled_body(self, request: Request) -> tempfile.SpooledTemporaryFile[bytes]:
        spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        try:
            _copy_limited(request.stream, spool, self.max_upload)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool

    def _json_body(self, request: Request) -> Any:
        self._check_length(request)
        raw = request.get_data(cache=False)
        try:
            return json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"Malformed JSON body: {exc}") from exc
        except RecursionError as exc:  # nested deeper than the parser's recursion limit
            raise BadRequest("Malformed JSON body: nested too deeply") from exc


def _copy_limited(src: IO[bytes], dst: Any, limit: int) -> None:
    total = 0
    while chunk := src.read(1024 * 1024):
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes")
        dst.write(chunk)


def _header_safe(value: str) -> str:
    """``value`` as is if it can be a header value, else percent-encoded (non-latin-1, control chars)."""
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return quote(value, safe="/")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return quote(value, safe="/")
    return value
