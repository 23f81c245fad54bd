"""The storage API: one dispatcher over raw-path segments.

Werkzeug's URL map matches decoded paths, where ``exp%2Fsub`` and ``exp/sub`` look the same; the
API gives them different meanings (``GET /storage/exp%2Fsub`` lists the folder ``sub`` of ``exp``,
``GET /storage/exp/sub`` downloads the file ``sub``), so routing here works on the segments of the
raw path.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import mimetypes
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote

from flask import Request, Response, jsonify, send_file

from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    LoginRequired,
    NotFound,
    NotImplementedYet,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
)
from .frontend import API_HEADS, FrontendFiles
from .login import MAX_USER_NAME, LoginLimiter, login_page
from .paths import (
    INTERNAL_NAMES,
    RAW_PATH_KEY,
    RESERVED_NAMES,
    TMP_PREFIX,
    check_experiment_name,
    join_parts,
    relative_parts,
    split_raw_path,
    strip_prefix,
)
from .registry import BackendRegistry
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
from .users import MAX_PASSWORD_BYTES, ExperimentRecord, UserStore
from .zips import ZipLimits, check_zip, extract_to_staging, merge_into, open_zip, write_zip

log = logging.getLogger(__name__)

HIDDEN_FROM_LISTINGS = frozenset({"robots", "brains", "environments"})
SPOOL_IN_MEMORY = 16 * 1024 * 1024
MAX_JSON_BODY = 64 * 1024
MAX_SIMULATION_NAME = 512
GROUPS = ["hbp-sp10-user-edit-rights"]
ADMIN_GROUP = "group-HBP-NRP-Admins"

#: What the template catalogue shows where a template's configuration says nothing (the stored file
#: is never changed).
TEMPLATE_DEFAULTS: dict[str, Any] = {
    "thumbnail": "/",
    "SimulationDescription": "No description available for this experiment.",
    "SimulationTimeout": 0,
    "DataPackProcessor": "tf",
    "SimulationLoop": "FTILoop",
    "SimulationTimestep": 0.01,
    "ProcessLauncherType": "Basic",
    "EngineConfigs": [],
    "DataPackProcessingFunctions": [],
    "ComputationalGraph": [],
    "ExternalProcesses": [],
    "EventLoopTimeout": 0,
    "EventLoopTimestep": 0.01,
    "ConnectMQTT": False,
    "ConnectROS": False,
}


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
    registry: BackendRegistry | None = None
    frontend: FrontendFiles | None = None
    token_ttl: float = 7 * 24 * 3600.0
    login_origins: tuple[str, ...] = ()
    limiter: LoginLimiter = field(default_factory=LoginLimiter)

    # entry point

    def dispatch(self, request: Request) -> Response:
        """Answer one request; raises :class:`~hbp_nrp_storage.errors.StorageServerError` subclasses."""
        method = request.method
        if method == "OPTIONS":
            return Response(status=204)
        raw_segments = split_raw_path(request.environ[RAW_PATH_KEY])
        if (
            self.frontend is not None
            and method in ("GET", "HEAD")
            and (not raw_segments or raw_segments[0] not in API_HEADS)
        ):
            return self.frontend.response(raw_segments)
        via_proxy = raw_segments[:1] == ["proxy"]
        segments = strip_prefix(raw_segments)
        head = segments[0] if segments else ""
        if segments == ["health"] and method in ("GET", "HEAD"):
            return self.health()
        if head == "authentication" and len(segments) == 2:
            return self._authentication(request, segments[1])
        if segments == ["maintenancemode"] and method == "GET":
            return jsonify({})  # the maintenance feature is off: the original answers {} then
        try:
            user = self.authenticate(request)
        except Unauthorized:
            if via_proxy:  # the NRP frontend starts its login on 477 only
                raise LoginRequired() from None
            raise
        if head == "identity" and method in ("GET", "POST"):
            return self._identity(request, user, segments[1:])
        if len(segments) == 1 and method == "GET":
            if head == "experiments":
                return self.template_catalogue()
            if head == "availableServers":
                return jsonify(self._registry().available())
            if head == "serversWithNoBackend":
                return jsonify(self._registry().down())
        if head == "server" and len(segments) == 2 and method == "GET":
            return self.server_entry(segments[1])
        if head == "storage" and len(segments) >= 2:
            return self._storage(request, user, segments[1:])
        raise NotFound("Not found")

    def _registry(self) -> BackendRegistry:
        if self.registry is None:
            raise NotFound("No backend registry is configured")
        return self.registry

    # local login: the form, and user name + password -> token

    def _authentication(self, request: Request, action: str) -> Response:
        if action == "loginpage" and request.method == "GET":
            page = login_page(
                request.args.get("client_id", "")[:256],
                request.args.get("redirect_uri", "")[:4096],
                list(self.login_origins),
            )
            response = Response(page, mimetype="text/html")
            response.headers["Cache-Control"] = "no-store"
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
            return response
        if action == "authenticate" and request.method == "POST":
            return self.authenticate_password(request)
        raise NotFound("Not found")

    def authenticate_password(self, request: Request) -> Response:
        """``{"user", "password"}`` -> a login token as text; 403 on bad credentials, 429 when limited."""
        body = self._json_body(request, limit=MAX_JSON_BODY)
        if not isinstance(body, dict):
            raise BadRequest('Expected a JSON object {"user": ..., "password": ...}')
        name, password = body.get("user"), body.get("password")
        if not isinstance(name, str) or not name or len(name) > MAX_USER_NAME or not _utf8(name):
            raise BadRequest(f"Field 'user' must be a non-empty string of at most {MAX_USER_NAME} characters")
        if not isinstance(password, str) or not _utf8(password):
            raise BadRequest("Field 'password' must be a string")
        if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
            raise BadRequest(f"Field 'password' must be a string of at most {MAX_PASSWORD_BYTES} bytes")
        wait = self.limiter.retry_after(name)
        if wait > 0:
            raise TooManyRequests(
                f"Too many failed logins; try again in {int(wait) + 1} s", retry_after=int(wait) + 1
            )
        with self.limiter.hashing:
            token = self.users.login(name, password, self.token_ttl or None)
        if token is None:
            self.limiter.failed(name)
            log.warning("failed login for user %r", name)
            raise Forbidden()
        return Response(token, mimetype="text/plain")

    # identity extras the frontend asks for

    def _identity(self, request: Request, user: str, rest: list[str]) -> Response:
        if rest == ["gdpr"]:
            if request.method == "POST":
                self.users.accept_gdpr(user)
                return jsonify(True)
            return jsonify({"gdpr": self.users.gdpr_accepted(user)})
        if rest == ["me", "groups"] and request.method == "GET":
            return jsonify(GROUPS + ([ADMIN_GROUP] if user == "admin" else []))
        if len(rest) == 1 and request.method == "GET":
            return self.identity(user, rest[0])
        raise NotFound("Not found")

    # backend registry: the REST servers the frontend may use, and what runs on them

    def server_entry(self, name: str) -> Response:
        entry = self._registry().server(name)
        if entry is None:
            raise NotFound(f"Server {name} not found", data={"field": "server", "value": name})
        return jsonify(entry.to_json())

    def _joinable(self) -> dict[str, list[dict[str, Any]]]:
        return self.registry.joinable() if self.registry is not None else {}

    # templates: the catalogue, and experiments cloned from it

    def template_catalogue(self) -> Response:
        joinable = self._joinable()
        catalogue: dict[str, Any] = {}
        for template_id in self.templates.ids():
            folder, config_name = self.templates.resolve(template_id)
            try:
                config = load_config_file(folder / config_name)
            except BadRequest:
                continue  # a JSON file that is not a configuration
            configuration = {**TEMPLATE_DEFAULTS, **config}
            configuration.update(
                {
                    "path": folder.name,
                    "configFile": config_name,
                    "experimentId": template_id,
                    "maturity": "production",
                }
            )
            if not isinstance(configuration.get("SimulationName"), str):
                configuration["SimulationName"] = folder.name
            catalogue[template_id] = {
                "configuration": configuration,
                "joinableServers": joinable.get(template_id, []),
            }
        return jsonify(catalogue)

    def _storage(self, request: Request, user: str, rest: list[str]) -> Response:
        method = request.method
        first = rest[0]
        if first == "experiments":
            if len(rest) == 1 and method == "GET":
                return self.list_experiments(request, user)
            if len(rest) == 3 and rest[2] == "zip" and method == "GET":
                return self.export_zip(user, rest[1])
            if len(rest) == 3 and rest[2] == "rename" and method == "PUT":
                return self.rename(request, user, rest[1])
            if len(rest) == 3 and rest[2] == "archive" and method == "GET":
                return self.archive(user, rest[1])
        if method == "POST" and len(rest) == 1 and first == "importExperiment":
            return self.import_experiment(request, user)
        if method == "POST" and first == "clone":
            if len(rest) == 1:
                return self.clone_template(request, user)
            if len(rest) == 2:
                return self.clone_experiment(user, rest[1])
        if method == "POST" and len(rest) == 1 and first == "scanStorage":
            return self.scan_storage(user)
        if method == "POST" and len(rest) == 1 and first == "clonenew":
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
        """The user name of the request's Bearer token (any scheme word is accepted).

        Raises:
            Unauthorized: missing, empty or single-word header, unknown or expired token.
        """
        words = request.headers.get("Authorization", "").split(None, 1)
        if len(words) < 2 or not words[1].strip():
            raise Unauthorized()
        user = self.users.user_for_token(words[1].strip())
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
        joinable = self._joinable()
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
                    "joinableServers": joinable.get(name, []),
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

    def rename(self, request: Request, user: str, name: str) -> Response:
        """Set ``SimulationName`` in the experiment's config (owner only); answer the new name as text.

        An empty name gives the current name a fresh timestamp. The folder name never changes.
        """
        relative_parts(name)
        body = self._json_body(request, limit=MAX_JSON_BODY)
        new_name = body.get("newSimulationName") if isinstance(body, dict) else None
        if not isinstance(new_name, str):
            raise BadRequest(
                'Field \'newSimulationName\' is required: expected a JSON object {"newSimulationName": "..."}'
            )
        new_name = new_name.strip()
        if len(new_name) > MAX_SIMULATION_NAME or not new_name.isprintable():
            raise BadRequest(
                f"Field 'newSimulationName' must be printable and at most {MAX_SIMULATION_NAME} characters"
            )
        self.experiment(name, user, "admin")
        config_path = self.store.path([name, CONFIG_NAME])
        with self.store.naming():  # one rename at a time, so two never lose each other's write
            config = load_config_file(config_path)
            if not new_name:
                new_name = retimestamp(str(config.get("SimulationName") or name), timestamp_now())
            config["SimulationName"] = new_name
            write_config(config_path, config)
        return Response(new_name, mimetype="text/plain")

    def scan_storage(self, user: str) -> Response:
        """Register unregistered folders to the caller and drop records of vanished folders (4.4)."""
        added, deleted = [], []
        with self.store.naming():
            folders = set(self.store.folders())
            for record in self.users.experiments():
                if record.name not in folders and not self.store.exists(record.name):
                    self.users.remove_experiment(record.name)
                    deleted.append(record.name)
            known = {record.name for record in self.users.experiments()}
            for name in sorted(folders - known):
                if name in RESERVED_NAMES or name in INTERNAL_NAMES or name in HIDDEN_FROM_LISTINGS:
                    continue
                if not self.store.exists(name):  # vanished since the listing
                    continue
                self.users.add_experiment(name, user)
                added.append(name)
        if added or deleted:
            log.info("scanStorage by %s: added %s, deleted %s", user, added, deleted)
        return jsonify({"addedFolders": added, "deletedFolders": sorted(deleted)})

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
        if request.args.get("type") == "file":
            # the frontend's Experiment Files tab: DELETE /storage/<exp>/<exp/sub/file>?byname=true&type=file,
            # the file's full path (its uuid, with real slashes) after the experiment
            parts = join_parts(*rest[1:])
            if parts[0] != relative_parts(rest[0])[0]:
                raise BadRequest(
                    f"Invalid path: with type=file the path must start with the experiment {rest[0]!r}"
                )
        elif request.args.get("byname") == "true":
            parts = join_parts(*rest)
        else:
            parts = join_parts(*rest[1:])
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

    def archive(self, user: str, name: str) -> Response:
        """The experiment's tree as one uncompressed tar stream, for the backend's clone (ours).

        Read access suffices (a simulation runs from a copy of any experiment the user can read);
        logs, ``logs/``, ``__pycache__/`` and ``*.swp`` are left out at every level. Members are
        relative to the experiment folder; folders come first, so empty ones are kept.
        """
        relative_parts(name)
        self.experiment(name, user, "read")
        root = self.store.path([name])
        response = Response(_tar_stream(root), mimetype="application/x-tar")
        response.headers["Content-Disposition"] = f"attachment; filename={_header_safe(name)}.tar"
        return response

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

    def _json_body(self, request: Request, limit: int | None = None) -> Any:
        self._check_length(request)
        if limit is not None:
            if request.content_length is not None and request.content_length > limit:
                raise PayloadTooLarge(f"JSON body exceeds the limit of {limit} bytes")
            raw = request.stream.read(limit + 1)
            if len(raw) > limit:
                raise PayloadTooLarge(f"JSON body exceeds the limit of {limit} bytes")
        else:
            raw = request.get_data(cache=False)
        try:
            return json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"Malformed JSON body: {exc}") from exc


ARCHIVE_SKIP_DIRS = frozenset({"logs", "__pycache__"})
ARCHIVE_SKIP_FILES = ("*.log", "*.log.zip", "*.swp")


def _header(info: tarfile.TarInfo) -> bytes:
    """A ustar header; a pax one where ustar cannot hold the name (long or non-ASCII) or the size.

    The common case is built here: ``TarInfo.tobuf`` spends most of a small-file archive's time on
    its checksum.
    """
    try:
        name = info.name.encode("ascii")
    except UnicodeEncodeError:
        name = b""
    if not name or len(name) > 100 or info.size >= 8**11:
        return info.tobuf(format=tarfile.PAX_FORMAT)
    header = bytearray(tarfile.BLOCKSIZE)
    header[0 : len(name)] = name
    header[100:108] = b"%07o\0" % info.mode
    header[108:116] = header[116:124] = b"0000000\0"
    header[124:136] = b"%011o\0" % info.size
    header[136:148] = b"%011o\0" % int(info.mtime)
    header[148:156] = b" " * 8
    header[156:157] = info.type
    header[257:265] = b"ustar\x0000"
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _tar_pieces(root: Path) -> Iterator[bytes]:
    """The pieces of an uncompressed tar of ``root``'s tree, file by file (memory stays bounded).

    Each file's size is taken from its open descriptor, so a file replaced meanwhile (writes are
    atomic renames) is sent whole as it was; a file that shrinks in place ends the stream early, and
    the client's tar reader reports the truncation.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in ARCHIVE_SKIP_DIRS and not d.startswith(TMP_PREFIX) and not (here / d).is_symlink()
        )
        rel_dir = here.relative_to(root)
        if rel_dir != Path("."):
            info = tarfile.TarInfo(rel_dir.as_posix())
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            yield _header(info)
        for name in sorted(filenames):
            if name.startswith(TMP_PREFIX) or any(fnmatch.fnmatch(name, p) for p in ARCHIVE_SKIP_FILES):
                continue
            path = here / name
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:  # vanished, or a symlink
                continue
            with os.fdopen(fd, "rb") as handle:
                st = os.fstat(handle.fileno())
                if not stat.S_ISREG(st.st_mode):
                    continue
                info = tarfile.TarInfo((rel_dir / name).as_posix())
                info.size = st.st_size
                info.mode = 0o644
                info.mtime = int(st.st_mtime)
                yield _header(info)
                left = st.st_size
                while left > 0:
                    chunk = handle.read(min(left, 1024 * 1024))
                    if not chunk:
                        raise OSError(f"{path} shrank while it was sent")
                    left -= len(chunk)
                    yield chunk
                if st.st_size % tarfile.BLOCKSIZE:
                    yield b"\0" * (tarfile.BLOCKSIZE - st.st_size % tarfile.BLOCKSIZE)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _tar_stream(root: Path, batch: int = 256 * 1024) -> Iterator[bytes]:
    """:func:`_tar_pieces` gathered into writes of about ``batch`` bytes (a few hundred small files
    are then a handful of socket writes, not one per header and file)."""
    pending: list[bytes] = []
    size = 0
    for piece in _tar_pieces(root):
        pending.append(piece)
        size += len(piece)
        if size >= batch:
            yield b"".join(pending)
            pending.clear()
            size = 0
    if pending:
        yield b"".join(pending)


def _copy_limited(src: IO[bytes], dst: Any, limit: int) -> None:

    total = 0
    while chunk := src.read(1024 * 1024):
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes")
        dst.write(chunk)


def _utf8(text: str) -> bool:
    """Whether ``text`` can be stored as UTF-8 (JSON may carry lone surrogates such as ``"\\ud800"``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _header_safe(value: str) -> str:
    """``value`` as is if it can be a header value, else percent-encoded (non-latin-1, control chars)."""
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return quote(value, safe="/")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return quote(value, safe="/")
    return value
