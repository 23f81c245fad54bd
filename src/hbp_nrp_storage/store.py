"""The filesystem experiment store: one flat folder per experiment under the storage root.

Every write goes to a temporary entry beside its target (``.nrp-tmp-*``), is flushed with ``fsync``
and renamed into place with ``os.replace``, so an interrupted or crashed request leaves the old
content or nothing, never a truncated file. Leftover temporaries are removed when the store opens.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from .paths import TMP_PREFIX, confine, is_listed

log = logging.getLogger(__name__)

CONFIG_NAME = "simulation_config.json"
CHUNK = 1024 * 1024
APPEND_LOCK_STRIPES = 64

#: What a storage-side clone of an experiment leaves out, at every level: recorded data, logs, caches.
CLONE_SKIP_DIRS = frozenset({"csv_records", "recordings", "logs", "__pycache__"})
CLONE_SKIP_FILES = ("*.log", "*.log.zip")

_TIMESTAMP_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}Z? ")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def iso_time(timestamp: float) -> str:
    """``2026-11-28T03:11:07.123Z``, the form the original's listings use."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def timestamp_now() -> str:
    """Now in UTC as ``YYYY-MM-DDTHH:MM:SSZ`` (clone dates and ``SimulationName`` prefixes)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def retimestamp(name: str, stamp: str) -> str:
    """``SimulationName`` with a fresh timestamp: an existing leading timestamp is replaced."""
    return f"{stamp} {_TIMESTAMP_PREFIX.sub('', name, count=1)}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    target: Path,
    stream: IO[bytes] | None = None,
    data: bytes | None = None,
    append: bool = False,
    limit: int | None = None,
) -> int:
    """Write ``stream`` (or ``data``) to ``target`` through a temporary file; return the bytes written.

    Args:
        target: the file to create or replace; its parent folders are created.
        stream: binary source read in chunks until EOF.
        data: bytes to write instead of ``stream``.
        append: keep the old content and add the new bytes after it.
        limit: most bytes ``stream`` may deliver.

    Raises:
        PayloadTooLarge: ``stream`` delivered more than ``limit`` bytes (nothing changed).
        Conflict: a folder stands at ``target`` or a file where a parent folder must be.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise Conflict(f"Cannot create folder for {target.name}: a file is in the way") from exc
    if target.is_dir():
        raise Conflict(f"{target.name} is a folder")
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
    tmp = Path(tmp_name)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            if append and target.is_file():
                with target.open("rb") as old:
                    shutil.copyfileobj(old, out, CHUNK)
            if data is not None:
                out.write(data)
                written = len(data)
            elif stream is not None:
                while chunk := stream.read(CHUNK):
                    written += len(chunk)
                    if limit is not None and written > limit:
                        raise PayloadTooLarge(f"Request body exceeds {limit} bytes")
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return written


def remove_temporaries(root: Path) -> int:
    """Delete leftover ``.nrp-tmp-*`` entries anywhere under ``root``; return how many."""
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames):
            if name.startswith(TMP_PREFIX):
                shutil.rmtree(os.path.join(dirpath, name), ignore_errors=True)
                dirnames.remove(name)
                removed += 1
        for name in filenames:
            if name.startswith(TMP_PREFIX):
                try:
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
                except OSError:
                    pass
    return removed


def copy_tree(
    src: Path,
    dest: Path,
    skip: Callable[[Path, bool], bool] = lambda path, is_dir: False,
) -> None:
    """Copy ``src`` into the (new or existing) folder ``dest``; symlinks are not followed or copied.

    Args:
        skip: ``skip(relative_path, is_dir)`` returns True for entries to leave out.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(src):
        here = Path(dirpath)
        rel_dir = here.relative_to(src)
        for name in list(dirnames):
            rel = rel_dir / name
            if (here / name).is_symlink() or name.startswith(TMP_PREFIX) or skip(rel, True):
                dirnames.remove(name)
                continue
            (dest / rel).mkdir(exist_ok=True)
        for name in filenames:
            rel = rel_dir / name
            if (here / name).is_symlink() or name.startswith(TMP_PREFIX) or skip(rel, False):
                continue
            shutil.copyfile(here / name, dest / rel)


def clone_skip(rel: Path, is_dir: bool) -> bool:
    """True for an entry a storage-side experiment clone leaves out (see ``CLONE_SKIP_DIRS``)."""
    if is_dir:
        return rel.name in CLONE_SKIP_DIRS
    return any(fnmatch.fnmatch(rel.name, pattern) for pattern in CLONE_SKIP_FILES)


@dataclass
class ExperimentStore:
    """Experiment folders under ``root``, with a parsed-config cache keyed by modification time."""

    root: Path
    _names_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _config_cache: dict[str, tuple[tuple[int, int], dict[str, Any] | None]] = field(
        default_factory=dict, init=False, repr=False
    )
    #: Appends to one file take turns (an append copies the old content; two at once lose one).
    _append_locks: tuple[threading.Lock, ...] = field(
        default_factory=lambda: tuple(threading.Lock() for _ in range(APPEND_LOCK_STRIPES)),
        init=False,
        repr=False,
    )

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        removed = remove_temporaries(self.root)
        if removed:
            log.info("removed %d leftover temporary entries under %s", removed, self.root)

    def path(self, parts: Iterable[str]) -> Path:
        """The checked path of ``parts`` below the root (symlinks leading outside give 400)."""
        return confine(self.root, parts)

    def folders(self) -> list[str]:
        """Names of every listed (non-internal) folder at the root."""
        try:
            entries = os.scandir(self.root)
        except FileNotFoundError:
            return []
        with entries:
            return sorted(
                e.name for e in entries if e.is_dir(follow_symlinks=False) and is_listed(e.name, True)
            )

    def exists(self, name: str) -> bool:
        return (self.root / name).is_dir()

    def list_folder(self, parts: list[str]) -> list[dict[str, Any]]:
        """Non-recursive listing ``[{name, uuid, size, type, modifiedOn}]`` of a folder.

        Raises:
            NotFound: no such folder.
        """
        folder = self.path(parts)
        if not folder.is_dir():
            raise NotFound("Folder not found")
        prefix = "/".join(parts)
        items: list[dict[str, Any]] = []
        with os.scandir(folder) as entries:
            for entry in entries:
                if not is_listed(entry.name, at_root=False):
                    continue
                try:
                    st = entry.stat()
                except OSError:  # dangling symlink
                    continue
                is_dir = entry.is_dir()
                items.append(
                    {
                        "name": entry.name,
                        "uuid": f"{prefix}/{entry.name}",
                        "size": 0 if is_dir else st.st_size,
                        "type": "folder" if is_dir else "file",
                        "modifiedOn": iso_time(st.st_mtime),
                    }
                )
        items.sort(key=lambda item: item["name"])
        return items

    def file(self, parts: list[str]) -> Path:
        """The existing regular file at ``parts``.

        Raises:
            NotFound: missing, or not a regular file.
        """
        path = self.path(parts)
        if not path.is_file():
            raise NotFound("File not found")
        return path

    def write(
        self, parts: list[str], stream: IO[bytes], append: bool = False, limit: int | None = None
    ) -> int:
        """Write (or append to) the file at ``parts`` atomically; return the bytes written."""
        target = self.path(parts)
        if not append:
            return atomic_write(target, stream=stream, limit=limit)
        lock = self._append_locks[hash(os.path.realpath(target)) % APPEND_LOCK_STRIPES]
        with lock:
            return atomic_write(target, stream=stream, append=True, limit=limit)

    def make_folder(self, parts: list[str]) -> None:
        path = self.path(parts)
        if path.exists() and not path.is_dir():
            raise Conflict(f"{path.name} exists and is a file")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise Conflict("A file is in the way of the folder") from exc

    def delete_file(self, parts: list[str]) -> None:
        path = self.path(parts)
        if path.is_symlink() or path.is_file():
            path.unlink()
        else:
            raise NotFound("File not found")

    def delete_folder(self, parts: list[str]) -> None:
        """Delete a folder recursively: it is first renamed to a temporary name, so it vanishes at once."""
        shutil.rmtree(self.detach_folder(parts), ignore_errors=True)

    def detach_folder(self, parts: list[str]) -> Path:
        """Rename a folder to a temporary name (it vanishes at once) and return that name, to delete.

        Raises:
            NotFound: no such folder (a symlink is not a folder here).
        """
        path = self.path(parts)
        if path.is_symlink() or not path.is_dir():
            raise NotFound("Folder not found")
        doomed = path.with_name(f"{TMP_PREFIX}del-{os.urandom(6).hex()}")
        os.rename(path, doomed)
        return doomed

    # new experiments

    def new_name(self, base: str, taken: Iterable[str]) -> str:
        """``<base>_<n>`` with the smallest n unused on disk and in ``taken``; call under :meth:`naming`."""
        used = set(taken)
        n = 0
        while f"{base}_{n}" in used or (self.root / f"{base}_{n}").exists():
            n += 1
        return f"{base}_{n}"

    def naming(self) -> threading.Lock:
        """The lock that makes choosing a new name and renaming a folder to it one step."""
        return self._names_lock

    def staging(self) -> Path:
        """A new empty temporary folder at the root, to build an experiment in before renaming it."""
        return Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self.root))

    def publish(self, staged: Path, name: str) -> None:
        """Rename a staged folder to experiment ``name`` (the name must be free)."""
        target = self.root / name
        if target.exists():
            raise Conflict("Experiment already exists")
        try:
            os.rename(staged, target)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise Conflict("Experiment already exists") from exc
            raise
        _fsync_dir(self.root)

    def create_empty(self, name: str) -> None:
        try:
            (self.root / name).mkdir()
        except FileExistsError as exc:
            raise Conflict("Experiment already exists") from exc

    # simulation_config.json

    def read_config(self, name: str) -> dict[str, Any] | None:
        """The parsed ``simulation_config.json`` of an experiment (cached by mtime and size).

        Returns:
            the object; ``None`` if the file is missing.

        Raises:
            ValueError: the file is not a JSON object.
        """
        path = self.root / name / CONFIG_NAME
        try:
            st = path.stat()
        except OSError:
            return None
        key = (st.st_mtime_ns, st.st_size)
        cached = self._config_cache.get(name)
        if cached and cached[0] == key:
            if cached[1] is None:
                raise ValueError("corrupted")
            return dict(cached[1])
        try:
            config = json.loads(path.read_bytes())
            if not isinstance(config, dict):
                raise ValueError("not an object")
        except (ValueError, OSError, RecursionError) as exc:  # OSError: e.g. a folder of that name
            self._config_cache[name] = (key, None)
            raise ValueError(str(exc)) from exc
        self._config_cache[name] = (key, config)
        return dict(config)


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Write a ``simulation_config.json`` atomically, indented like nrp-core's examples."""
    atomic_write(path, data=(json.dumps(config, indent=4) + "\n").encode("utf-8"))


def load_config_file(path: Path) -> dict[str, Any]:
    """Parse a config file that must be a JSON object.

    Raises:
        BadRequest: missing or not a JSON object.
    """
    try:
        config = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise BadRequest(f"{path.name} is missing") from exc
    except OSError as exc:
        raise BadRequest(f"{path.name} cannot be read: {exc.strerror}") from exc
    except ValueError as exc:
        raise BadRequest(f"{path.name} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest(f"{path.name} is nested too deeply") from exc
    if not isinstance(config, dict):
        raise BadRequest(f"{path.name} is not a JSON object")
    return config
