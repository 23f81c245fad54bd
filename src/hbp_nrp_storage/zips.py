"""Safe zip import and export.

A zip is checked whole before anything is extracted: an entry that is absolute, holds ``..``, is a
symlink, or breaks the limits (uncompressed total, entry count, compression ratio per entry and in
total) refuses the zip with 400. Extraction goes to a temporary folder that the caller renames or
moves into place.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .errors import BadRequest, Conflict
from .paths import TMP_PREFIX, confine, relative_parts

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ZipLimits:
    """Limits a zip must respect (``NRP_STORAGE_ZIP_MAX_MB``, ``..._MAX_FILES``, ``..._MAX_RATIO``)."""

    max_bytes: int
    max_files: int
    max_ratio: float


@dataclass(frozen=True)
class ZipEntry:
    """A checked zip member: its path parts and whether it is a folder."""

    info: zipfile.ZipInfo
    parts: tuple[str, ...]
    is_dir: bool


def open_zip(source: IO[bytes] | Path) -> zipfile.ZipFile:
    """Open a zip, turning any malformed input into 400."""
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise BadRequest(f"The body is not a valid zip file: {exc}") from exc


def check_zip(archive: zipfile.ZipFile, limits: ZipLimits) -> list[ZipEntry]:
    """Check every entry of ``archive`` against the path rules and ``limits``.

    Returns:
        the entries, with their checked path parts.

    Raises:
        BadRequest: the first rule broken; the message names the entry.
    """
    infos = archive.infolist()
    if len(infos) > limits.max_files:
        raise BadRequest(f"Zip has {len(infos)} entries, more than the limit of {limits.max_files}")
    entries: list[ZipEntry] = []
    total = 0
    total_compressed = 0
    for info in infos:
        name = info.filename
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise BadRequest(f"Zip entry {name!r} is a symbolic link")
        if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
            raise BadRequest(f"Zip entry {name!r} has an absolute or non-portable path")
        is_dir = name.endswith("/")
        try:
            parts = tuple(relative_parts(name.rstrip("/")))
        except BadRequest as exc:
            raise BadRequest(f"Zip entry {name!r} escapes the target folder") from exc
        total += info.file_size
        total_compressed += info.compress_size
        if total > limits.max_bytes:
            raise BadRequest(f"Zip content exceeds the limit of {limits.max_bytes} bytes uncompressed")
        if info.file_size and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise BadRequest(f"Zip entry {name!r} exceeds the compression ratio limit of {limits.max_ratio}")
        entries.append(ZipEntry(info, parts, is_dir))
    if total > limits.max_ratio * max(total_compressed, 1) and total > 0:
        raise BadRequest(f"Zip exceeds the total compression ratio limit of {limits.max_ratio}")
    return entries


def extract(archive: zipfile.ZipFile, entries: list[ZipEntry], dest: Path, strip: int = 0) -> None:
    """Extract checked ``entries`` below ``dest``, dropping the first ``strip`` path parts.

    Sizes are enforced while writing, so a zip whose headers lie cannot write more than they say.

    Raises:
        BadRequest: corrupt data (bad CRC, truncated member).
    """
    for entry in entries:
        parts = entry.parts[strip:]
        if not parts:
            continue
        target = dest.joinpath(*parts)
        try:
            (target if entry.is_dir else target.parent).mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:  # ``a`` is a file and ``a/...`` follows
            raise BadRequest(f"Zip entry {entry.info.filename!r} collides with a file") from exc
        if entry.is_dir:
            continue
        if target.is_dir():
            raise BadRequest(f"Zip entry {entry.info.filename!r} collides with a folder")
        try:
            with archive.open(entry.info) as src, target.open("wb") as out:
                written = 0
                while chunk := src.read(CHUNK):
                    written += len(chunk)
                    if written > entry.info.file_size:
                        raise BadRequest(f"Zip entry {entry.info.filename!r} is larger than declared")
                    out.write(chunk)
        except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
            raise BadRequest(f"Zip entry {entry.info.filename!r} cannot be extracted: {exc}") from exc


def extract_to_staging(
    archive: zipfile.ZipFile, entries: list[ZipEntry], parent: Path, strip: int = 0
) -> Path:
    """Extract into a new temporary folder inside ``parent``; on error nothing is left behind."""
    staging = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent))
    try:
        extract(archive, entries, staging, strip)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def merge_into(staging: Path, dest: Path, root: Path) -> None:
    """Move every file of ``staging`` into ``dest`` with ``os.replace`` (each file appears whole).

    Every target is checked first, so a conflict changes nothing.

    Raises:
        Conflict: a folder stands where the zip has a file, or a file where it has a folder.
        BadRequest: a target leads outside ``root`` through a symlink.
    """
    moves: list[tuple[Path, Path]] = []
    try:
        for dirpath, dirnames, filenames in os.walk(staging):
            rel = Path(dirpath).relative_to(staging)
            for name in dirnames:
                target = confine(root, (dest / rel / name).relative_to(root).parts)
                if target.exists() and not target.is_dir():
                    raise Conflict(
                        f"{(rel / name).as_posix()} is a file in the experiment, a folder in the zip"
                    )
            for name in filenames:
                target = confine(root, (dest / rel / name).relative_to(root).parts)
                if target.is_dir():
                    raise Conflict(
                        f"{(rel / name).as_posix()} is a folder in the experiment, a file in the zip"
                    )
                moves.append((Path(dirpath) / name, target))
        for dirpath, _dirnames, _filenames in os.walk(staging):
            (dest / Path(dirpath).relative_to(staging)).mkdir(parents=True, exist_ok=True)
        for source, target in moves:
            os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_zip(folder: Path, root_name: str, out: IO[bytes]) -> None:
    """Zip ``folder`` into ``out`` under one root folder ``root_name/`` (empty folders kept)."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo(f"{root_name}/"), b"")
        for dirpath, dirnames, filenames in os.walk(folder):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(TMP_PREFIX))
            rel = here.relative_to(folder)
            for name in dirnames:
                if (here / name).is_symlink():
                    continue
                archive.writestr(zipfile.ZipInfo(f"{root_name}/{(rel / name).as_posix()}/"), b"")
            for name in sorted(filenames):
                path = here / name
                if name.startswith(TMP_PREFIX) or path.is_symlink():
                    continue
                archive.write(path, f"{root_name}/{(rel / name).as_posix()}")
