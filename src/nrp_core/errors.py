r"""Typed errors of the nrp_core runtime: one hierarchy under :class:`NrpCoreError`.

Each error also derives from the built-in exception callers caught before the hierarchy existed
(``ConfigError`` is a ``ValueError``, ``EngineError`` and ``FunctionError`` are ``RuntimeError``\ s,
``NrpCoreStateError`` a ``ConnectionError``), and the modules that raise them still export them
(``nrp_core.config.ConfigError``, ``nrp_core.engines.launch.EngineError``, ...).

Errors raised by user code (engine scripts) are re-raised as :class:`EngineScriptError` with the
user's traceback attached, so the innermost frame still names the user's file and line.
"""

from __future__ import annotations

import os
import sysconfig
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "DataPackRegistrationError",
    "EmptyDataPackError",
    "EngineError",
    "EngineRequestError",
    "EngineScriptError",
    "EngineScriptLoadError",
    "FunctionError",
    "FunctionLoadError",
    "NrpCoreError",
    "NrpCoreStateError",
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


class EmptyDataPackError(NrpCoreError, RuntimeError):
    """Raised when the data of an id-only (empty) datapack is accessed."""


class ConfigError(NrpCoreError, ValueError):
    """An invalid experiment configuration; lists every problem found, each with its JSON path.

    Args:
        problems: one message per problem (or a single message).
        source: the config file the problems were found in, if any.
    """

    def __init__(self, problems: str | Sequence[str], source: str | Path | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = str(source) if source is not None else None
        where = f" {self.source}" if self.source else ""
        if len(self.problems) == 1:
            text = f"Invalid simulation configuration{where}: {self.problems[0]}"
        else:
            listing = "\n".join(f"  - {problem}" for problem in self.problems)
            text = f"Invalid simulation configuration{where} ({len(self.problems)} problems):\n{listing}"
        super().__init__(text)


class FunctionLoadError(NrpCoreError):
    """A function file is missing, broken, registers no function or more than one, or clashes."""


class FunctionError(NrpCoreError, RuntimeError):
    """A function raised, returned something illegal or asked for a datapack that is not there.

    Attributes:
        function_name: the config ``Name`` of the function.
        file: the user file the error points to (the innermost frame in a user file).
        line: the line in ``file`` (0 when unknown).
        error: one-line description (``ExceptionClass: message``).
        traceback: the formatted traceback, or ``""`` when the error is a rule violation.
    """

    def __init__(self, function_name: str, file: str, line: int, error: str, tb: str = "") -> None:
        self.function_name = function_name
        self.file = file
        self.line = line
        self.error = error
        self.traceback = tb
        text = f'Function "{function_name}" ({Path(file).name}:{line}): {error}'
        if tb:
            text += "\n" + tb.rstrip()
        super().__init__(text)


class NrpCoreStateError(NrpCoreError, ConnectionError):
    """A call that the simulation state machine does not allow in the current state (see ``_ALLOWED``)."""


class EngineError(NrpCoreError, RuntimeError):
    """An engine failed: it raised, died, timed out or could not be launched.

    Attributes:
        engine_name: the ``EngineName``.
        op: the operation (``initialize``, ``run_loop``, ``get_datapacks``, ...).
        file: the user file of the innermost user frame ("" when unknown).
        line: its line (0 when unknown).
        error: one-line description.
        traceback: the engine-side traceback ("" when there is none).
    """

    def __init__(
        self, engine_name: str, op: str, error: str, file: str = "", line: int = 0, tb: str = ""
    ) -> None:
        self.engine_name = engine_name
        self.op = op
        self.error = error
        self.file = file
        self.line = line
        self.traceback = tb
        if file:
            text = f'Engine "{engine_name}" ({Path(file).name}:{line}): {error} (in {op})'
        else:
            text = f'Engine "{engine_name}" failed in {op}: {error}'
        if tb:
            text += "\n" + tb.rstrip()
        super().__init__(text)

    @classmethod
    def from_details(cls, engine_name: str, details: Mapping[str, Any]) -> EngineError:
        return cls(
            engine_name,
            details.get("op", "?"),
            f"{details.get('type', 'Error')}: {details.get('message', '')}",
            details.get("file", ""),
            int(details.get("line", 0) or 0),
            details.get("traceback", ""),
        )


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
