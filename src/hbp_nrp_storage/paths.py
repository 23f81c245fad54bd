"""Raw-path routing helpers and the checks that keep every path inside the storage root.

Routing works on the undecoded request path: a ``%2F`` inside one segment addresses a sub-folder,
so the path is split on ``/`` first and each segment is then decoded with ``unquote`` (never
``unquote_plus``: a ``+`` stays a ``+``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .errors import BadRequest

RAW_PATH_KEY = "nrp.raw_path"

#: Names the original matches as fixed routes before experiment routes, plus our own prefixes.
RESERVED_NAMES = frozenset(
    {
        "experiments",
        "models",
        "clone",
        "clonenew",
        "importExperiment",
        "scanStorage",
        "knowledgeGraph",
        "identity",
        "authentication",
        "proxy",
        "storage",
    }
)

#: Entries of the storage root that belong to the original's metadata and are never listed.
INTERNAL_NAMES = frozenset({"FS_db", "USER_DATA", "TEMPLATE_MODELS", "KG_DATA_FOLDER"})

#: Prefix of the temporary files and folders every write goes through (never listed).
TMP_PREFIX = ".nrp-tmp-"


class RawPathMiddleware:
    """WSGI middleware that hands the undecoded request path to the router.

    waitress sets ``REQUEST_URI``, gunicorn ``RAW_URI``; the decoded ``PATH_INFO`` is only a fallback
    (re-quoted, so it cannot carry ``%2F`` sub-folder segments).
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
        if raw:
            if "://" in raw.split("?", 1)[0]:  # absolute-form request target
                parts = urlsplit(raw)
                raw = parts.path or "/"
            raw = raw.split("?", 1)[0]
        else:
            raw = quote(environ.get("PATH_INFO", "/"))
        environ[RAW_PATH_KEY] = raw
        return self.app(environ, start_response)


def split_raw_path(raw_path: str) -> list[str]:
    """Split a raw path on ``/`` and decode each segment; empty segments are dropped."""
    return [unquote(seg) for seg in raw_path.split("/") if seg != ""]


def strip_prefix(segments: list[str]) -> list[str]:
    """Strip one leading routing prefix: ``proxy/``, or ``storage/`` before ``storage/`` or ``identity/``."""
    if segments[:1] == ["proxy"]:
        return segments[1:]
    if len(segments) >= 3 and segments[0] == "storage" and segments[1] in ("storage", "identity"):
        return segments[1:]
    return segments


#: Longest file or folder name (bytes, as the filesystem counts them) and longest relative path.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4000


def relative_parts(path: str) -> list[str]:
    """Split a decoded relative path into checked components.

    Raises:
        BadRequest: the path is empty or absolute, or has an empty, ``.``, ``..``, NUL or backslash part.
    """
    if not path or path.startswith("/") or path.startswith("\\"):
        raise BadRequest(f"Invalid path {path!r}: absolute or empty paths are not allowed")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise BadRequest(f"Invalid path: longer than {MAX_PATH_BYTES} bytes")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", "..") or "\0" in part or "\\" in part:
            raise BadRequest(f"Invalid path {path!r}")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise BadRequest(f"Invalid path: a name is longer than {MAX_NAME_BYTES} bytes")
        if part.startswith(TMP_PREFIX):
            raise BadRequest(f"Invalid path {path!r}: reserved name {part!r}")
    return parts


def join_parts(*pieces: str) -> list[str]:
    """Join decoded path pieces (each may hold ``/``) into checked components."""
    parts: list[str] = []
    for piece in pieces:
        parts.extend(relative_parts(piece))
    return parts


def check_experiment_name(name: str) -> str:
    """Return ``name`` if a new experiment may be called so.

    Raises:
        BadRequest: reserved, internal, hidden or otherwise unusable name.
    """
    relative_parts(name)
    if "/" in name or name in RESERVED_NAMES or name in INTERNAL_NAMES or name.startswith("."):
        raise BadRequest(f"Invalid experiment name {name!r}: the name is reserved or not allowed")
    return name


def confine(root: Path, parts: Iterable[str]) -> Path:
    """The path ``root/parts...``, after checking that symlinks do not lead outside ``root``.

    Raises:
        BadRequest: the resolved path is outside the root.
    """
    target = root.joinpath(*parts)
    real_root = os.path.realpath(root)
    real = os.path.realpath(target)
    if real != real_root and not real.startswith(real_root + os.sep):
        raise BadRequest("Invalid path: it leads outside the storage root")
    return target


def is_listed(name: str, at_root: bool) -> bool:
    """Whether a directory entry shows in listings (temporaries and internal entries do not)."""
    if name.startswith(TMP_PREFIX):
        return False
    if at_root and (name in INTERNAL_NAMES or name.startswith(".")):
        return False
    return True
