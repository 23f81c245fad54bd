"""A main script that raises shows its traceback in the REST ``error`` (not only in the log zip);
``sys.exit(n)`` with n != 0 is reported with its exit code (real Simulation Server)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.backend.conftest import REPO, BackendFactory, Storage

DEADLINE = 90.0


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("def inner():\n    raise ValueError('kaputt')\n\ninner()\n", {"msg": "kaputt"}),
        ("import sys\nsys.exit(3)\n", {"exit_code": 3}),
        ("import sys\nsys.exit('giving up')\n", {"exit_code": 1}),
    ],
    ids=["raises", "exit-3", "exit-text"],
)
def test_script_failures_reach_the_rest_error(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path, script: str, expected: dict[str, object]
) -> None:
    name = f"script_{abs(hash(script)) % 10**8}"
    experiment = tmp_path / name
    shutil.copytree(
        REPO / "experiments" / "tf_exchange", experiment, ignore=shutil.ignore_patterns("__pycache__")
    )
    (experiment / "main_script.py").write_text(script)
    storage.client().upload_experiment(storage.alice, name, experiment)
    backend = start_backend(NRP_SIMSERVER_MODULE="hbp_nrp_simserver")
    rest = backend.rest
    sim_id = rest.launch(name)["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"] or s["state"] == "failed", timeout=DEADLINE)
    rest.set_state(sim_id, "started")
    # the script's end is ``completed`` (as in the original), with the error reported
    sim = rest.wait_for(
        sim_id, lambda s: s["state"] in ("completed", "failed") and bool(s["error"]), timeout=DEADLINE
    )
    error = sim["error"]
    for key, value in expected.items():
        assert value == error.get(key) or (isinstance(value, str) and value in error.get(key, "")), error
    assert "Traceback (most recent call last)" in error["traceback"], error
    assert "main_script.py" in error["traceback"] and f"nrp.{sim_id}." not in json.dumps(error)
    if "raise" in script:
        assert "inner()" in error["traceback"]
