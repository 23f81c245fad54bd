"""Reports, at the end of the run, how many of nrp-core's example configs ran and why the others did not."""

from __future__ import annotations

from typing import Any

RESULTS: dict[str, str] = {}  # config (relative to examples/) -> "" when it ran, else the cause


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    passed = sorted(name for name, cause in RESULTS.items() if not cause)
    failed = sorted((name, cause) for name, cause in RESULTS.items() if cause)
    terminalreporter.section("nrp-core example configs")
    terminalreporter.write_line(f"{len(passed)} of {len(RESULTS)} example configs run unmodified")
    for name, cause in failed:
        terminalreporter.write_line(f"  not run: {name}: {cause}")
