"""Docstrings, comments and docs explain themselves: none cites a section of a document that is not
in this repository (the team's contract documents live outside it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: "contract 7.1", "contract section 8", "storage-contract.md", "(see spec/...)".
CITATION = re.compile(r"contract\s+(section\s+)?\d|[a-z]+-contract\.md|\bspec/[a-z-]+\.md", re.IGNORECASE)


def citations(paths: list[Path], root: Path = ROOT) -> list[str]:
    """``file:line: text`` of every citation in ``paths`` (file names relative to ``root``)."""
    found = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if CITATION.search(line):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_no_citation_of_absent_documents() -> None:
    paths = [
        *sorted((ROOT / "src").rglob("*.py")),
        *sorted((ROOT / "benchmarks").rglob("*.py")),
        *sorted((ROOT / "docs").rglob("*.md")),
        ROOT / "README.md",
    ]
    assert citations(paths) == []


def test_the_scanner_finds_a_citation(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""Routes (contract 7.1)."""\nx = 1  # see storage-contract.md\nclean = True\n')
    assert [line.split(": ", 1)[0] for line in citations([sample], tmp_path)] == [
        "sample.py:1",
        "sample.py:2",
    ]
