"""User-facing messages name files relative to the experiment, not the server's temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

from hbp_nrp_commons.user_paths import relative_paths


def test_paths_inside_the_directory_become_relative(tmp_path: Path) -> None:
    sim = tmp_path / "nrp.4.abc"
    text = f"No such file or directory: '{sim}/nope.py'\n  File \"{sim}/tfs/tf_1.py\", line 3\nin {sim}"
    assert relative_paths(text, sim) == (
        "No such file or directory: 'nope.py'\n  File \"tfs/tf_1.py\", line 3\nin ."
    )


def test_other_paths_are_left_alone(tmp_path: Path) -> None:
    sim = tmp_path / "nrp.4.abc"
    text = f"{sim}x/a.py {tmp_path}/other.py {sim}.old"
    assert relative_paths(text, sim) == text


def test_a_link_to_the_directory_is_recognised(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    os.symlink(real, link)
    assert relative_paths(f"'{real}/a.py' '{link}/b.py'", link) == "'a.py' 'b.py'"
