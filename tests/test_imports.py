"""Import rules of ``src/``, checked on the source text (AST), without importing anything.

1. No library module imports a command-line module. Command-line modules are the ``nrp_cli``
   package, the modules of the ``[project.scripts]`` entry points (``nrp_core.sim_main`` among
   them) and every ``__main__`` module.
2. Dependencies between our packages point one way (docs/architecture.md, "Rules that keep it
   simple"): ``nrp_core`` and ``hbp_nrp_commons`` import nothing of ours, ``hbp_nrp_simserver``
   imports commons and ``nrp_core``, ``hbp_nrp_backend`` imports commons only, ``hbp_nrp_storage``
   imports commons (and ``nrp_experiments``, to find the bundled experiments); ``nrp_cli`` may
   import every package.

Every import counts, also one inside a function or under ``if TYPE_CHECKING``. The experiment
scripts (``nrp_experiments``, a link to ``experiments/``) are user code and not scanned.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

#: Our top-level packages in src/.
OURS = frozenset(
    {"nrp_core", "hbp_nrp_commons", "hbp_nrp_simserver", "hbp_nrp_backend", "hbp_nrp_storage", "nrp_cli"}
    | {"nrp_experiments"}  # user experiment scripts: imported by others, not scanned
)
#: Which of our other packages each scanned package may import.
ALLOWED: dict[str, frozenset[str]] = {
    "nrp_core": frozenset(),
    "hbp_nrp_commons": frozenset(),
    "hbp_nrp_simserver": frozenset({"hbp_nrp_commons", "nrp_core"}),
    "hbp_nrp_backend": frozenset({"hbp_nrp_commons"}),
    # storage finds the bundled experiments through the nrp_experiments package, to read them as data
    "hbp_nrp_storage": frozenset({"hbp_nrp_commons", "nrp_experiments"}),
    "nrp_cli": OURS - {"nrp_cli"},
}
CLI_PACKAGES = frozenset({"nrp_cli"})


def entry_point_modules(pyproject: Path = ROOT / "pyproject.toml") -> frozenset[str]:
    """The modules named by ``[project.scripts]`` (``"pkg.mod:func"`` -> ``pkg.mod``)."""
    scripts = tomllib.loads(pyproject.read_text())["project"].get("scripts", {})
    return frozenset(target.partition(":")[0].strip() for target in scripts.values())


def is_cli_module(module: str, entry_points: frozenset[str]) -> bool:
    """True for a module of a CLI package, an entry-point module or a ``__main__`` module."""
    return (
        module.split(".")[0] in CLI_PACKAGES
        or module in entry_points
        or module.rsplit(".", 1)[-1] == "__main__"
    )


@dataclass(frozen=True)
class Import:
    line: int
    targets: tuple[str, ...]  # the imported module, and for ``from m import n`` also ``m.n``


def module_name(path: Path, src: Path) -> tuple[str, bool]:
    """The dotted module name of ``path`` under ``src``, and whether it is a package ``__init__``."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[Import]:
    """Every import statement of ``tree``, with relative imports resolved against ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield Import(node.lineno, tuple(alias.name for alias in node.names))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            yield Import(node.lineno, (base, *(f"{base}.{alias.name}" for alias in node.names)))


def violations(src: Path, entry_points: frozenset[str]) -> list[str]:
    """One ``path:line: message`` per broken rule, for every Python file of our packages in ``src``."""
    found = []
    for path in sorted(src.rglob("*.py")):
        top = path.relative_to(src).parts[0]
        if top not in ALLOWED:
            continue
        module, is_package = module_name(path, src)
        library = not is_cli_module(module, entry_points)
        where = path.relative_to(src.parent) if src.parent in path.parents else path
        for statement in imports(ast.parse(path.read_text(), str(path)), module, is_package):
            imported = statement.targets[0]
            imported_top = imported.split(".")[0]
            if library:
                cli = [t for t in statement.targets if is_cli_module(t, entry_points)]
                if cli:
                    found.append(
                        f"{where}:{statement.line}: library module {module} imports the command-line "
                        f"module {cli[0]}"
                    )
            if imported_top in OURS and imported_top != top and imported_top not in ALLOWED[top]:
                allowed = ", ".join(sorted(ALLOWED[top])) or "nothing of ours"
                found.append(
                    f"{where}:{statement.line}: {module} imports {imported}, but {top} may import "
                    f"{allowed} (docs/architecture.md)"
                )
    return found


def test_src_follows_the_import_rules() -> None:
    problems = violations(SRC, entry_point_modules())
    assert not problems, "\n".join(problems)


def test_entry_points_are_cli_modules() -> None:
    entry_points = entry_point_modules()
    assert {"nrp_cli.main", "nrp_core.sim_main"} <= entry_points
    for module in entry_points:
        assert (SRC / Path(*module.split("."))).with_suffix(".py").is_file(), module


def test_the_scanner_flags_violations(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for package in ("nrp_core", "hbp_nrp_backend", "hbp_nrp_simserver", "nrp_cli"):
        (src / package).mkdir(parents=True)
        (src / package / "__init__.py").write_text("")
    (src / "nrp_core" / "sim_main.py").write_text("import nrp_core.client\n")
    (src / "nrp_core" / "client.py").write_text(
        '"""A library module."""\n\nfrom nrp_core.sim_main import parse\nfrom . import sim_main\n'
    )
    (src / "hbp_nrp_backend" / "app.py").write_text(
        "def f():\n    from nrp_cli.main import cli\n    import hbp_nrp_simserver.server\n"
    )
    (src / "hbp_nrp_simserver" / "server.py").write_text("from .__main__ import main\nimport nrp_core\n")
    (src / "hbp_nrp_simserver" / "__main__.py").write_text("from hbp_nrp_simserver.server import run\n")
    (src / "nrp_cli" / "main.py").write_text("import hbp_nrp_backend.app\nimport nrp_core.sim_main\n")

    problems = violations(src, frozenset({"nrp_core.sim_main", "nrp_cli.main"}))

    assert problems == [
        "src/hbp_nrp_backend/app.py:2: library module hbp_nrp_backend.app imports the command-line "
        "module nrp_cli.main",
        "src/hbp_nrp_backend/app.py:2: hbp_nrp_backend.app imports nrp_cli.main, but hbp_nrp_backend "
        "may import hbp_nrp_commons (docs/architecture.md)",
        "src/hbp_nrp_backend/app.py:3: hbp_nrp_backend.app imports hbp_nrp_simserver.server, but "
        "hbp_nrp_backend may import hbp_nrp_commons (docs/architecture.md)",
        "src/hbp_nrp_simserver/server.py:1: library module hbp_nrp_simserver.server imports the "
        "command-line module hbp_nrp_simserver.__main__",
        "src/nrp_core/client.py:3: library module nrp_core.client imports the command-line module "
        "nrp_core.sim_main",
        "src/nrp_core/client.py:4: library module nrp_core.client imports the command-line module "
        "nrp_core.sim_main",
    ]
