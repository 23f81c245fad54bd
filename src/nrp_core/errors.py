"""Typed errors of the nrp_core runtime.

Errors raised by user code (engine scripts) are re-raised as :class:`EngineScriptError` with the
user's traceback attached, so the innermost frame still names the user's file and line.
"""

from __future__ import annotations

import os
import sysconfig
import traceback
from pathlib import Path

__all__ = [
    "DataPackRegistrationError",
    "EngineRequestError",
    "EngineScriptError",
    "EngineScriptLoadError",
    "NrpCoreError",
    "user_location",
]

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_LIBRARY_DIRS = tuple(
    sorted(
        {
            form
            for key in ("stdlib", "platstdlib", "purelib", "platlib")
            if (path := sysconfig.get_paths().get(key))
            for form in (path, os.path.realpath(path))
        }
    )
)


class NrpCoreError(Exception):
    """Base class of the runtime's own errors."""


class DataPackRegistrationError(NrpCoreError):
    """An engine script registered a datapack twice, or used one it never registered."""


class EngineRequestError(NrpCoreError):
    """An engine request was malformed (missing or ill-typed fields) or cannot be served in this state."""


class EngineScriptError(NrpCoreError):
    """User engine-script code raised; the user's traceback is kept.

    Raise it with :meth:`from_exception`, which chains the original exception (``__cause__``) and
    carries its traceback, so ``traceback.extract_tb(err.__traceback__)`` ends in the user's frame.

    Attributes:
        failure: what failed, e.g. ``"RunLoop failed"``.
        engine_name: the engine's name ("" when unknown).
        file: the user file of the innermost frame outside nrp_core ("" when unknown).
        line: its line number (0 when unknown).
    """

    def __init__(
        self, failure: str, detail: str = "", engine_name: str = "", file: str = "", line: int = 0
    ) -> None:
        self.failure = failure
        self.detail = detail
        self.engine_name = engine_name
        self.file = file
        self.line = line
        text = f"{failure}: {detail}" if detail else failure
        location = f" ({Path(file).name}, line {line})"
        if file and not text.endswith(location):  # a SyntaxError's text already ends with it
            text += location
        super().__init__(text)

    def __reduce__(self) -> tuple:
        # Keep the attributes across pickling (engine processes report errors to the loop).
        return (type(self), (self.failure, self.detail, self.engine_name, self.file, self.line))

    @classmethod
    def from_exception(cls, failure: str, exc: BaseException, engine_name: str = "") -> EngineScriptError:
        """Wrap ``exc`` (raised by user code): message ``"<failure>: <Type>: <text> (<file>, line <n>)"``.

        Use as ``raise EngineScriptError.from_exception("RunLoop failed", exc) from exc``.
        """
        file, line = user_location(exc)
        error = cls(failure, f"{type(exc).__name__}: {exc}", engine_name, file, line)
        return error.with_traceback(exc.__traceback__)


class EngineScriptLoadError(EngineScriptError):
    """An engine script file could not be loaded or does not define a valid ``Script`` class."""


def user_location(exc: BaseException) -> tuple[str, int]:
    """``(file, line)`` of the innermost traceback frame outside the nrp_core package.

    Frames in the standard library or installed packages are passed over when a frame of user code
    called them (a ``json.loads`` failing in a TF names the TF's line); frozen modules (the innermost
    frames of import errors) always are. A ``SyntaxError`` reports the offending file and line
    itself, an :class:`EngineScriptError` the location it found when wrapping the user's exception.
    """
    if isinstance(exc, SyntaxError) and exc.filename:
        return exc.filename, exc.lineno or 0
    if isinstance(exc, EngineScriptError) and exc.file:
        return exc.file, exc.line
    user = innermost = ("", 0)
    for frame in traceback.extract_tb(exc.__traceback__):
        name = frame.filename
        if name.startswith((_PACKAGE_DIR, "<frozen ")):
            continue
        innermost = (name, frame.lineno or 0)
        # The frame that called into the standard library or an installed package, not that code.
        if not name.startswith(_LIBRARY_DIRS):
            user = innermost
    return user if user[0] else innermost
