"""Paths in user-facing messages: relative to the experiment, never the server's own folders.

A simulation runs in a temporary copy of its experiment (``/tmp/nrp.<id>.<random>``); its users
know only the experiment, so errors shown to them (REST ``error``, ``runtime_error`` messages, CLI
output) name files relative to it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def relative_paths(text: str, directory: str | Path) -> str:
    """``text`` with every path inside ``directory`` made relative to it; ``directory`` itself is ``.``.

    Both the given and the resolved form of ``directory`` are recognised (``/tmp`` may be a link).
    """
    if not text:
        return text
    forms = {str(directory).rstrip(os.sep), os.path.realpath(directory).rstrip(os.sep)}
    for form in sorted((f for f in forms if f), key=len, reverse=True):
        text = text.replace(form + os.sep, "")
        text = re.sub(re.escape(form) + r"(?![\w.-])", ".", text)
    return text
