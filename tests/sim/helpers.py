"""Helpers for the simulator tests: copy a bundled experiment, run it through ``NrpCore``, read its data.

Every run happens in a copy of the experiment under ``tmp_path`` so the repository stays clean. The
experiments record what they do through the datatransfer engine (``data/<run>/<name>.data``, one JSON
object per line), which is what the tests assert on.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from nrp_experiments import bundled_experiments_dir


def require(*modules: str) -> None:
    """Skip the test when a simulator package is not installed at all.

    Like ``pytest.importorskip`` but without importing it into the test process (NEST and PyBullet
    load native libraries and print banners); a package that is installed but broken fails the test.
    """
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")


FILES = Path(__file__).resolve().parent / "files"

UPSTREAM = Path(__file__).resolve().parents[2].parent / "shared" / "upstream" / "nrp-core"
"""nrp-core's sources with its examples (a test fixture beside the repository, never copied into it)."""


def upstream_example(path: str, destination: Path) -> Path:
    """Copy nrp-core's ``examples/<path>`` to ``destination``; skip the test saying why when absent."""
    source = UPSTREAM / "examples" / path
    if not source.is_dir():
        pytest.skip(f"nrp-core's examples are not available (no {path} in ../shared/upstream/nrp-core)")
    target = destination / Path(path).name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def tvb_data_standin(destination: Path) -> Path | None:
    """A directory to put first on ``PYTHONPATH`` when ``tvb_data`` lacks nrp-core's TVB connectivity.

    nrp-core's ``opensim_tvb`` brain loads the Berlin subject ``QL_20120814`` from ``tvb_data``; the
    ``tvb-data`` package on PyPI does not ship it. The stand-in is a ``tvb_data`` package holding that
    file, made from the 68-region Desikan-Killiany connectivity that PyPI's ``tvb-data`` does ship
    (same atlas, labels renamed to the ``precentral_L`` form, unit areas). None when the real file exists.
    """
    import bz2
    import zipfile

    spec = importlib.util.find_spec("tvb_data")
    if spec is None or spec.origin is None:
        pytest.skip("tvb-data is not installed")
    package = Path(spec.origin).parent
    wanted = Path("berlinSubjects") / "QL_20120814" / "QL_20120814_Connectivity.zip"
    if (package / wanted).is_file():
        return None
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(package / "connectivity" / "connectivity_68.zip") as source:
        for name in source.namelist():
            data = source.read(name)
            if name.endswith(".bz2"):
                data, name = bz2.decompress(data), name[: -len(".bz2")]
            files[name] = data
    rows = [line.split() for line in files["centres.txt"].decode().splitlines() if line.strip()]
    labels = []
    for row in rows:
        side, region = row[0].split("_", 1)  # r_precentral -> precentral_R
        row[0] = f"{region}_{side.upper()}"
        labels.append(row[0])
    files["centres.txt"] = "".join(" ".join(row) + "\n" for row in rows).encode()
    files["areas.txt"] = "".join("1000.0\n" for _ in labels).encode()
    files["cortical.txt"] = "".join("1\n" for _ in labels).encode()
    hemispheres = ("1\n" if label.endswith("_R") else "0\n" for label in labels)
    files["hemispheres.txt"] = "".join(hemispheres).encode()
    root = destination / "tvb_data_standin"
    target = root / "tvb_data" / wanted
    target.parent.mkdir(parents=True)
    (root / "tvb_data" / "__init__.py").write_text("")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return root


def copy_experiment(name: str, destination: Path) -> Path:
    """Copy experiment ``name`` (bundled, or a test model under ``files/``) to ``destination/name``."""
    target = destination / name
    source = FILES / name if (FILES / name).is_dir() else bundled_experiments_dir() / name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "data", "*.log"))
    return target


def read_records(experiment: Path, name: str) -> list[dict[str, Any]]:
    """The ``data`` of every line the datatransfer engine wrote for datapack ``name`` (one run)."""
    files = sorted(experiment.glob(f"data/*/{name}.data"))
    assert files, f"no recording of {name} under {experiment / 'data'}"
    with open(files[-1], encoding="utf-8") as stream:
        return [json.loads(line)["data"] for line in stream if line.strip()]


class Run:
    """One ``NrpCore`` client on an experiment copy; shut down by the fixture."""

    def __init__(self, experiment: Path, overrides: list[str]) -> None:
        from nrp_core import NrpCore

        self.experiment = experiment
        args = " ".join(f"-o {override}" for override in overrides)
        self.client = NrpCore("localhost:5345", experiment_folder=str(experiment), args=args)

    def until_timeout(self) -> tuple[bool, bool, list[Any]]:
        self.client.initialize()
        return self.client.run_until_timeout()

    def records(self, name: str) -> list[dict[str, Any]]:
        return read_records(self.experiment, name)
