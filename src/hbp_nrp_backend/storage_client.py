"""Client of the storage server's HTTP API (the original NRP storage proxy's calls and names).

One keep-alive ``requests.Session``, a timeout on every call, retries with backoff for connection
errors, timeouts and 5xx answers (never for appends or other non-idempotent calls), every path
segment percent-encoded with ``quote(segment, safe='')``, and one error hierarchy:
:class:`StorageError` > :class:`StorageNotFound`, :class:`StorageUnauthorized`,
:class:`StorageUnavailable` (also a ``ConnectionError``).

This module depends on nothing of ours but the settings and timestamps of ``hbp_nrp_commons``: the
backend never imports the storage server.
"""

from __future__ import annotations

import fnmatch
import io
import os
import shutil
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import requests

from hbp_nrp_commons.settings import Settings
from hbp_nrp_commons.timestamps import file_stamp

#: Waits between the 3 attempts of a retried call.
BACKOFF: tuple[float, ...] = (0.5, 1.0)
#: What a clone leaves out, at every level: logs and Python caches belong to a run, not to the experiment.
EXCLUDE_FILES: tuple[str, ...] = ("*.log", "*.log.zip")
EXCLUDE_FOLDERS: tuple[str, ...] = ("logs", "__pycache__")
CHUNK = 1024 * 1024


class StorageError(Exception):
    """A storage call failed.

    Attributes:
        status_code: the HTTP status, or ``None`` when there was no answer.
        detail: the server's error message, when it sent one.
    """

    def __init__(self, message: str, status_code: int | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class StorageNotFound(StorageError):
    """404, or the NRP storage proxy's 204 for a missing file."""


class StorageUnauthorized(StorageError):
    """401, 403 or 477 (the NRP storage proxy's "log in again"); 404 from ``get_user``."""


class StorageUnavailable(StorageError, ConnectionError):
    """No answer (connection error, timeout) or 5xx after retries."""


class ArchiveUnsupported(StorageNotFound):
    """The server has no archive route; the caller falls back to one request per file."""


def _quote(segment: str) -> str:
    return quote(segment, safe="")


def _is_plain_name(name: object) -> bool:
    """Whether a listed entry name is one path component that stays inside its folder."""
    return isinstance(name, str) and name not in ("", ".", "..") and not any(char in name for char in "/\\\0")


def _detail(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:500] or None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return None


def _read_exact(stream: Any, count: int) -> bytes:
    """Exactly ``count`` bytes of ``stream``.

    Raises:
        EOFError: the stream ended first.
    """
    data = stream.read(count)
    while len(data) < count:
        more = stream.read(count - len(data))
        if not more:
            raise EOFError(f"the archive ended {count - len(data)} bytes early")
        data += more
    return data


def _copy_exact(stream: Any, out: IO[bytes] | None, size: int) -> None:
    """Copy a member's ``size`` bytes and the padding to its 512-byte block to ``out`` (None: skip)."""
    left = size
    while left > 0:
        chunk = stream.read(min(left, CHUNK))
        if not chunk:
            raise EOFError(f"the archive ended {left} bytes early")
        left -= len(chunk)
        if out is not None:
            out.write(chunk)
    if size % tarfile.BLOCKSIZE:
        _read_exact(stream, tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE)


def _tar_members(stream: Any) -> Iterable[tuple[str, str, int, Any]]:
    """``(name, "dir" | "file", size, stream)`` per member of an uncompressed tar stream.

    Reads the tar itself (``tarfile``'s stream mode copies every byte several times over): ustar
    headers, and pax headers for their ``path`` only. The caller must consume each file's bytes
    (:func:`_copy_exact`) before the next member. Any other member type is an error.

    Raises:
        tarfile.TarError: a bad header or a member that is neither a folder nor a regular file.
        EOFError: the stream ended early.
    """
    pax_path: str | None = None
    while True:
        block = _read_exact(stream, tarfile.BLOCKSIZE)
        if block == tarfile.NUL * tarfile.BLOCKSIZE:
            return
        info = _parse_header(block)
        if info.type == tarfile.XHDTYPE:
            if info.size > 64 * 1024:
                raise tarfile.TarError("pax header over 64 KiB")
            records = _read_exact(stream, info.size)
            if info.size % tarfile.BLOCKSIZE:
                _read_exact(stream, tarfile.BLOCKSIZE - info.size % tarfile.BLOCKSIZE)
            pax_path = _pax_path(records)
            continue
        name = pax_path if pax_path is not None else info.name
        pax_path = None
        if info.type == tarfile.DIRTYPE:
            yield name, "dir", 0, stream
        elif info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
            yield name, "file", info.size, stream
        else:
            raise tarfile.TarError(f"member {name!r} is neither a folder nor a regular file")


def _parse_header(block: bytes) -> tarfile.TarInfo:
    """The name, type and size of a ustar header block, its checksum checked.

    Raises:
        tarfile.TarError: a bad checksum or size field.
    """
    stored = block[148:156].rstrip(b"\0 ")
    try:
        checksum = int(stored or b"0", 8)
        size = int(block[124:136].rstrip(b"\0 ") or b"0", 8)
    except ValueError as exc:
        raise tarfile.TarError("malformed tar header") from exc
    if checksum != sum(block[:148]) + 256 + sum(block[156:]):
        raise tarfile.TarError("bad tar header checksum")
    name = block[0:100].split(b"\0", 1)[0]
    if block[257:262] == b"ustar":
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    info = tarfile.TarInfo(name.decode("utf-8", "surrogateescape"))
    info.type = block[156:157] or tarfile.REGTYPE
    info.size = size
    return info


def _pax_path(records: bytes) -> str | None:
    """The ``path`` of a pax extended header (records ``"<len> <key>=<value>\\n"``)."""
    path = None
    while records:
        length_text, _, _rest = records.partition(b" ")
        try:
            length = int(length_text)
        except ValueError as exc:
            raise tarfile.TarError("malformed pax header") from exc
        if length <= len(length_text) + 1:
            raise tarfile.TarError("malformed pax header")
        record = records[:length]
        key, _, value = record[len(length_text) + 1 : -1].partition(b"=")
        if key == b"path":
            path = value.decode("utf-8", "surrogateescape")
        records = records[length:]
    return path


class StorageClient:
    """Typed client of one storage server.

    Args:
        base_url: the part before ``/storage/...`` and ``/identity/me``, e.g. ``http://127.0.0.1:9000``
            or the original's form ``http://localhost:9000/storage`` (the server strips the doubled prefix).
        timeout: seconds for connecting and for each read.
        backoff: waits between attempts of retried calls (its length + 1 attempts).
    """

    def __init__(self, base_url: str, timeout: float = 30.0, backoff: Sequence[float] = BACKOFF) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.backoff = tuple(backoff)
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=8)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # Every call goes to the same server: resolve proxy variables (and NO_PROXY) once, instead of
        # scanning the environment on every request, which costs about as much as a small download.
        self.session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        self.session.trust_env = False

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageClient:
        """A client for ``NRP_STORAGE_URL`` (or the ``STORAGE_ADDRESS``/``STORAGE_PORT`` form)."""
        return cls(settings.storage_url, timeout=settings.storage_timeout)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> StorageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # transport

    def _url(self, *segments: str, raw: str | None = None) -> str:
        path = "/".join(_quote(seg) for seg in segments)
        return f"{self.base_url}/{path}" + (f"/{raw}" if raw else "")

    def request(
        self,
        method: str,
        url: str,
        token: str,
        *,
        retry: bool = True,
        not_found_on_204: bool = False,
        headers: dict[str, str] | None = None,
        body: bytes | IO[bytes] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one call with the Bearer token; retry when allowed; map failures to typed errors.

        Raises:
            StorageNotFound, StorageUnauthorized, StorageUnavailable, StorageError.
        """
        all_headers = {"Authorization": f"Bearer {token}"}
        all_headers.update(headers or {})
        # A seekable stream body is rewound to where it started before each retry.
        stream = body if body is not None and not isinstance(body, bytes) and hasattr(body, "seek") else None
        start = stream.tell() if stream is not None else None
        can_retry = retry and (body is None or isinstance(body, bytes) or start is not None)
        waits = self.backoff if can_retry else ()
        attempt = 0
        while True:
            if stream is not None and start is not None:
                stream.seek(start)
            try:
                response = self.session.request(
                    method, url, headers=all_headers, data=body, timeout=self.timeout, **kwargs
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt < len(waits):
                    time.sleep(waits[attempt])
                    attempt += 1
                    continue
                raise StorageUnavailable(f"Failed to communicate with the storage server: {exc}") from exc
            if response.status_code >= 500 and attempt < len(waits):
                response.close()
                time.sleep(waits[attempt])
                attempt += 1
                continue
            break
        status = response.status_code
        if status < 400 and not (not_found_on_204 and status == 204):
            return response
        detail = _detail(response)
        response.close()
        message = f"Failed to communicate with the storage server, status code {status}"
        if status == 404 or status == 204:
            raise StorageNotFound(message, status, detail)
        if status in (401, 403, 477):
            raise StorageUnauthorized(message, status, detail)
        if status >= 500:
            raise StorageUnavailable(message, status, detail)
        raise StorageError(message, status, detail)

    # low-level calls, one per storage route, with the original client's names

    def get_user(self, token: str) -> dict[str, Any]:
        """``GET /identity/me``: the user JSON; ``id`` is the user name.

        Raises:
            StorageUnauthorized: the token is not valid (401, 403, 477 or 404).
        """
        try:
            return self.request("GET", self._url("identity", "me"), token).json()
        except (StorageNotFound, StorageUnauthorized) as exc:
            raise StorageUnauthorized(
                f"Could not verify auth token, status code {exc.status_code}", exc.status_code, exc.detail
            ) from exc

    def list_experiments(
        self, token: str, ctx: str | None = None, get_all: bool = False, name: str | None = None
    ) -> list[dict[str, Any]]:
        """``GET /storage/experiments``: what the user can read (every folder with ``get_all``)."""
        params: dict[str, str] = {}
        if name is not None:
            params["filter"] = name
        if get_all:
            params["all"] = "true"
        headers = {"context-id": ctx} if ctx else None
        return self.request(
            "GET", self._url("storage", "experiments"), token, params=params, headers=headers
        ).json()

    def get_files_list(self, token: str, experiment: str, folder: bool = False) -> list[dict[str, Any]]:
        """Entries of a folder (``experiment`` may be ``exp/sub``); files only unless ``folder``."""
        entries = self.request("GET", self._url("storage", experiment), token).json()
        return [
            entry
            for entry in entries
            if (folder or entry.get("type") != "folder") and not entry["name"].lower().endswith(".swp")
        ]

    def get_file(self, token: str, experiment: str, filename: str, by_name: bool = False) -> bytes:
        """The bytes of ``experiment/filename`` (``by_name``) or of the root-relative path ``filename``.

        Raises:
            StorageNotFound: the file is missing (404, or 204 from the NRP storage proxy).
        """
        response = self.request(
            "GET",
            self._url("storage", experiment, filename),
            token,
            params={"byname": "true" if by_name else "false"},
            not_found_on_204=True,
        )
        return response.content

    def download_file(self, token: str, folder: str, name: str, dest: Path, atomic: bool = True) -> int:
        """Stream ``folder/name`` (``byname=true``) to ``dest``; return its size.

        Args:
            atomic: write through a temporary file renamed into place, so ``dest`` is never partial.
                A clone into a fresh folder passes False: it removes the whole tree on failure.
        """
        response = self.request(
            "GET",
            self._url("storage", folder, name),
            token,
            params={"byname": "true"},
            not_found_on_204=True,
            stream=True,
        )
        if atomic:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
            out = os.fdopen(fd, "wb")
        else:
            tmp = str(dest)
            out = open(dest, "wb")  # noqa: SIM115 - closed below
        size = 0
        try:
            with response, out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
                    size += len(chunk)
            if atomic:
                os.replace(tmp, dest)
        except requests.RequestException as exc:
            os.unlink(tmp)
            raise StorageUnavailable(f"Download of {folder}/{name} broke off: {exc}") from exc
        except BaseException:
            os.unlink(tmp)
            raise
        return size

    def create_or_update(
        self,
        token: str,
        experiment: str,
        filename: str,
        content: bytes | IO[bytes],
        content_type: str = "application/octet-stream",
        append: bool = False,
    ) -> int:
        """Write (or with ``append`` extend) ``experiment/filename``; ``filename`` may hold ``/``.

        Appends are never retried: appending twice would duplicate the data.
        """
        url = self._url("storage", experiment, raw="/".join(_quote(p) for p in filename.split("/")))
        response = self.request(
            "POST",
            url,
            token,
            retry=not append,
            params={"append": "true"} if append else None,
            headers={"Content-Type": content_type},
            body=content,
        )
        return response.status_code

    def delete_file(self, token: str, experiment: str, filename: str) -> str:
        """Delete ``experiment/filename`` (one encoded segment, like the original); return the name."""
        self.request("DELETE", self._url("storage", f"{experiment}/{filename}"), token)
        return filename

    def create_folder(self, token: str, experiment: str, name: str) -> dict[str, Any]:
        """Create folder ``experiment/name`` (``name`` may hold ``/``); an existing one is fine."""
        url = self._url("storage", experiment, raw="/".join(_quote(p) for p in name.split("/")))
        try:
            return self.request("POST", url, token, params={"type": "folder"}).json()
        except StorageError as exc:
            if exc.status_code == 400:  # the original's "already exists"
                return {"uuid": f"{experiment}/{name}", "entity_type": "folder", "name": name}
            raise

    def create_and_extract_zip(
        self, token: str, experiment: str, name: str, content: bytes | IO[bytes]
    ) -> int:
        """Upload a zip and extract it into ``experiment`` keeping its internal paths."""
        response = self.request(
            "POST",
            self._url("storage", experiment, name),
            token,
            params={"type": "zip"},
            headers={"Content-Type": "application/octet-stream"},
            body=content,
        )
        return response.status_code

    def create_experiment(self, token: str, name: str) -> dict[str, Any]:
        """``PUT /storage/<name>``: a new empty experiment (409 if it exists: a plain StorageError)."""
        return self.request("PUT", self._url("storage", name), token, retry=False).json()

    def delete_experiment(self, token: str, name: str) -> None:
        """``DELETE /storage/<name>``: the whole experiment (owner only)."""
        self.request("DELETE", self._url("storage", name), token)

    def import_experiment(self, token: str, content: bytes | IO[bytes]) -> dict[str, Any]:
        """``POST /storage/importExperiment``: a zip with one top folder F becomes ``F_<n>``."""
        return self.request(
            "POST",
            self._url("storage", "importExperiment"),
            token,
            retry=False,
            headers={"Content-Type": "application/octet-stream"},
            body=content,
        ).json()

    def export_experiment(self, token: str, name: str) -> bytes:
        """``GET /storage/experiments/<name>/zip``: the experiment zipped under one root folder."""
        return self.request("GET", self._url("storage", "experiments", name, "zip"), token).content

    def clone_file(
        self, token: str, filename: str, experiment: str, dest_dir: Path | None = None
    ) -> Path | None:
        """Download the top-level file ``filename`` of ``experiment`` (exact name match).

        Returns:
            the local path (in ``dest_dir``, else a new temporary folder), or ``None`` if missing.
        """
        names = {entry["name"] for entry in self.get_files_list(token, experiment)}
        if filename not in names:
            return None
        folder = dest_dir if dest_dir is not None else Path(tempfile.mkdtemp(prefix="nrp-clone-"))
        target = folder / filename
        self.download_file(token, experiment, filename, target)
        return target

    def get_folder_uuid_by_name(self, token: str, ctx: str | None, name: str) -> str | None:
        """The uuid of the experiment named exactly ``name`` among all folders, or ``None``."""
        for entry in self.list_experiments(token, ctx, get_all=True, name=name):
            if entry.get("name") == name:
                return entry.get("uuid")
        return None

    def clone_all_experiment_files(
        self,
        token: str,
        experiment: str,
        destination: Path,
        exclude: Iterable[str] = (),
        parallel: int = 4,
    ) -> list[Path]:
        """Copy the experiment tree into ``destination`` (sub-folders and empty folders kept).

        Args:
            exclude: shell-style patterns; ``name/`` patterns match folders, others match file names,
                at every level. Names ending in ``.swp`` are always dropped.
            parallel: how many listings and downloads run at once (1 = one after the other).

        Returns:
            the local paths of the downloaded files.

        Raises:
            StorageNotFound: the experiment or a listed file is missing (the clone is aborted).
            StorageError: a downloaded file's size differs from the listing (the clone is not trusted).
        """
        folder_rules = [p.rstrip("/") for p in exclude if p.endswith("/")]
        file_rules = [p for p in exclude if not p.endswith("/")]

        def excluded(name: str, rules: list[str]) -> bool:
            return any(fnmatch.fnmatch(name, rule) for rule in rules)

        destination.mkdir(parents=True, exist_ok=True)
        downloaded: list[Path] = []
        futures: deque[Future[None]] = deque()
        pool = ThreadPoolExecutor(parallel, thread_name_prefix="storage-clone") if parallel > 1 else None

        def submit(job: Callable[..., None], *args: Any) -> None:
            if pool is None:
                job(*args)
            else:
                futures.append(pool.submit(job, *args))

        def fetch(folder: str, name: str, target: Path, expected: int | None) -> None:
            size = self.download_file(token, folder, name, target, atomic=False)
            if isinstance(expected, int) and size != expected:
                raise StorageError(f"Downloaded {folder}/{name}: {size} bytes, the listing said {expected}")
            downloaded.append(target)

        def walk(uuid: str, local: Path) -> None:
            # listings and downloads share the pool, so the next folder is listed while files arrive
            for entry in self.get_files_list(token, uuid, folder=True):
                name = entry["name"]
                if not _is_plain_name(name):  # the server must not make us write outside destination
                    raise StorageError(f"Listing of {uuid} holds an invalid file name {name!r}")
                if entry.get("type") == "folder":
                    if not excluded(name, folder_rules):
                        (local / name).mkdir(parents=True, exist_ok=True)
                        submit(walk, entry.get("uuid") or f"{uuid}/{name}", local / name)
                elif not excluded(name, file_rules):
                    submit(fetch, uuid, name, local / name, entry.get("size"))

        try:
            submit(walk, experiment, destination)
            while futures:  # a task queues its children before it ends, so empty means done
                futures.popleft().result()
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        return downloaded

    # the backend's two public operations

    def clone_experiment(self, token: str, experiment_id: str, dest: Path, parallel: int = 4) -> list[Path]:
        """Copy experiment ``experiment_id`` into ``dest`` without logs and caches.

        Excludes ``*.log``, ``*.log.zip``, ``logs/`` and ``__pycache__/`` at every level; on failure the
        partial tree is removed if ``dest`` did not exist before.
        """
        dest = Path(dest)
        existed = dest.exists()
        exclude = [*EXCLUDE_FILES, *(f"{name}/" for name in EXCLUDE_FOLDERS)]
        try:
            try:
                return self.clone_archive(token, experiment_id, dest, exclude)
            except ArchiveUnsupported:
                pass  # a server without the archive route (the NRP proxy): one request per file
            return self.clone_all_experiment_files(token, experiment_id, dest, exclude, parallel=parallel)
        except BaseException:
            if not existed:
                shutil.rmtree(dest, ignore_errors=True)
            raise

    def clone_archive(
        self, token: str, experiment: str, destination: Path, exclude: Iterable[str] = ()
    ) -> list[Path]:
        """Copy the experiment tree with one request: ``GET /storage/experiments/<exp>/archive`` (tar).

        Members must be plain relative paths of folders and regular files (anything else aborts the
        clone); ``exclude`` patterns apply as in :meth:`clone_all_experiment_files`; each file's size
        is checked against its header, and a stream cut short is an error.

        Raises:
            ArchiveUnsupported: the server has no such route (404 before any byte was written).
            StorageError: a bad member or a broken stream; StorageUnauthorized as for other calls.
        """
        folder_rules = [p.rstrip("/") for p in exclude if p.endswith("/")]
        file_rules = [p for p in exclude if not p.endswith("/")]
        try:
            response = self.request(
                "GET", self._url("storage", "experiments", experiment, "archive"), token, stream=True
            )
        except StorageNotFound as exc:
            raise ArchiveUnsupported(str(exc)) from exc
        destination.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        try:
            with response:
                # small reads (512-byte headers, small files) come from one buffer, not urllib3 each
                buffered = io.BufferedReader(response.raw, buffer_size=CHUNK)
                for name, kind, size, stream in _tar_members(buffered):
                    parts = name.rstrip("/").split("/")
                    if not all(_is_plain_name(part) for part in parts):
                        raise StorageError(f"Archive of {experiment} holds an invalid path {name!r}")
                    skipped = any(fnmatch.fnmatch(p, rule) for p in parts[:-1] for rule in folder_rules)
                    target = destination.joinpath(*parts)
                    if kind == "dir":
                        if not skipped and not any(fnmatch.fnmatch(parts[-1], r) for r in folder_rules):
                            target.mkdir(parents=True, exist_ok=True)
                        continue
                    skipped = skipped or parts[-1].lower().endswith(".swp")
                    skipped = skipped or any(fnmatch.fnmatch(parts[-1], rule) for rule in file_rules)
                    if skipped:
                        _copy_exact(stream, None, size)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(target, "wb") as out:
                        _copy_exact(stream, out, size)
                    written.append(target)
        except (tarfile.TarError, EOFError, ValueError) as exc:  # ValueError: read past a closed stream
            raise StorageError(f"Archive of {experiment} is broken: {exc}") from exc
        except (requests.RequestException, OSError) as exc:
            if isinstance(exc, StorageError):
                raise
            raise StorageUnavailable(f"Archive of {experiment} broke off: {exc}") from exc
        return written

    def upload_logs(
        self,
        token: str,
        experiment_id: str,
        zip_path: Path,
        simulation_id: int | str,
        now: Callable[[], float] = time.time,
    ) -> str:
        """Store ``zip_path`` as ``<YYYYMMDDTHHMMSSZ>_simulation_<id>.log.zip`` at the experiment root.

        The time is the upload's (``now()``, seconds since the epoch) in UTC, ISO 8601 basic form.

        Returns:
            the stored file name.
        """
        name = f"{file_stamp(now())}_simulation_{simulation_id}.log.zip"
        with open(zip_path, "rb") as body:
            self.create_or_update(token, experiment_id, name, body, "application/octet-stream")
        return name

    def upload_experiment(self, token: str, name: str, source: Path) -> int:
        """Create experiment ``name`` and upload the tree of ``source`` (empty folders too).

        Returns:
            the number of files uploaded.
        """
        self.create_experiment(token, name)
        files: list[tuple[str, Path]] = []
        for dirpath, dirnames, filenames in os.walk(source):
            rel = Path(dirpath).relative_to(source)
            for folder in dirnames:
                self.create_folder(token, name, (rel / folder).as_posix())
            for file in filenames:
                files.append(((rel / file).as_posix(), Path(dirpath) / file))

        def send(item: tuple[str, Path]) -> None:
            with item[1].open("rb") as body:
                self.create_or_update(token, name, item[0], body)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(send, files))  # raises the first failure
        return len(files)
