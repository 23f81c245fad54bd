"""The template catalogue: every ``<templates>/<dir>/<file>.json`` is a template ``dir/file.json``."""

from __future__ import annotations

from pathlib import Path

from .errors import BadRequest, NotFound
from .paths import relative_parts


def default_templates_dir() -> Path | None:
    """The bundled experiments (package data ``nrp_experiments``), or ``None`` if they are absent."""
    try:
        import nrp_experiments
    except ImportError:
        return None
    candidate = nrp_experiments.bundled_experiments_dir()
    return candidate if candidate.is_dir() else None


class TemplateCatalogue:
    """Templates found by globbing a folder; rescanned on every lookup, so it is never stale.

    Args:
        folder: the templates folder, or ``None`` for an empty catalogue.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def ids(self) -> list[str]:
        """Every template id ``"<dir>/<file>.json"``."""
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(
            f"{path.parent.name}/{path.name}"
            for path in self.folder.glob("*/*.json")
            if path.is_file() and not path.parent.name.startswith(".")
        )

    def resolve(self, template_id: str) -> tuple[Path, str]:
        """The template folder and config file name of ``template_id``.

        Raises:
            BadRequest: the id is not ``<dir>/<file>.json`` or escapes the folder.
            NotFound: no such template.
        """
        parts = relative_parts(template_id)
        if len(parts) != 2 or not parts[1].endswith(".json"):
            raise BadRequest(f"Invalid template {template_id!r}: expected <folder>/<config>.json")
        if self.folder is None:
            raise NotFound(f"Template {template_id} not found")
        folder = self.folder / parts[0]
        config = folder / parts[1]
        if not config.is_file() or config.is_symlink() or folder.is_symlink():
            raise NotFound(f"Template {template_id} not found")
        return folder, parts[1]
