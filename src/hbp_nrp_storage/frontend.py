"""Static files of an NRP frontend build, with the single-page fallback to ``index.html``.

Given a build folder (``nrp storage --frontend DIR`` or ``NRP_FRONTEND_DIR``), every GET or HEAD whose
path is not an API path (``/proxy``, ``/storage``, ``/identity``, ``/authentication``, ``/health``)
is a file of the folder, or ``index.html`` when there is no such file (the app's own routes, such as
``/experiment/<id>`` or ``/&access_token=...`` after a login). Paths never leave the folder: dot
segments and hidden names fall back to ``index.html``, symlinks leading outside are not followed.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

from flask import Response, send_file

#: First path segments that belong to the API when a frontend is served next to it.
API_HEADS = frozenset({"proxy", "storage", "identity", "authentication", "health"})


class FrontendError(ValueError):
    """The folder is not a frontend build; the message says why."""


class FrontendFiles:
    """The files of one build folder.

    Raises:
        FrontendError: the folder does not exist or has no ``index.html``.
    """

    def __init__(self, folder: Path) -> None:
        folder = folder.expanduser()
        if not folder.is_dir():
            raise FrontendError(f"frontend folder {folder} does not exist")
        if not (folder / "index.html").is_file():
            raise FrontendError(f"frontend folder {folder} has no index.html (is it a build folder?)")
        self.folder = folder.resolve()

    def find(self, segments: list[str]) -> Path | None:
        """The regular file at the decoded ``segments``, or ``None``."""
        if not segments:
            return None
        for segment in segments:
            if segment in ("", ".", "..") or segment.startswith(".") or "/" in segment or "\\" in segment:
                return None
            if "\0" in segment:
                return None
        path = self.folder.joinpath(*segments)
        real = os.path.realpath(path)
        if not real.startswith(str(self.folder) + os.sep) or not os.path.isfile(real):
            return None
        return Path(real)

    def response(self, segments: list[str]) -> Response:
        """The file at ``segments``, else ``index.html`` (never cached, so a new build shows at once)."""
        path = self.find(segments)
        if path is None:
            response = send_file(self.folder / "index.html", mimetype="text/html", max_age=0)
            response.headers["Cache-Control"] = "no-cache"
            return response
        mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        # the build's hashed bundles under static/ never change; everything else is revalidated
        immutable = segments[0] == "static"
        response = send_file(path, mimetype=mimetype, max_age=31536000 if immutable else 0, conditional=True)
        if not immutable:
            response.headers["Cache-Control"] = "no-cache"
        return response
