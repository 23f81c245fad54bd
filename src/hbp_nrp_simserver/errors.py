"""Errors of the Simulation Server: exit codes, the ``runtime_error`` report and script failures."""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hbp_nrp_commons.user_paths import relative_paths


class ServerProcessExitCodes(enum.IntEnum):
    """Exit codes of the Simulation Server process, which the backend reads to tell how it ended."""

    NO_ERROR = 0
    INITIALIZATION_ERROR = 1
    SHUTDOWN_ERROR = 2
    RUNNING_ERROR = 3


class ErrorType(enum.StrEnum):
    """``error_type`` values of a ``runtime_error`` message."""

    LOADING = "Loading"
    COMPILE = "Compile"
    RUNTIME = "Runtime"
    SIM_TIMEOUT = "SimTimeout"


@dataclass(frozen=True)
class ScriptError:
    """One error to report on the ``runtime_error`` topic.

    ``file_name``, ``line_number``, ``offset`` and ``line_text`` locate the error in the main script;
    -1 and ``""`` mean unknown. ``traceback`` is kept for logs and REST only, never published
    (the REST server reads it from the simulation folder, ``hbp_nrp_commons.runtime_error_file``).
    ``exit_code`` is the code of a ``sys.exit(n)`` with n != 0 (``None`` otherwise).
    """

    msg: str
    error_type: ErrorType
    file_name: str = ""
    line_number: int = -1
    offset: int = -1
    line_text: str = ""
    traceback: str = ""
    exit_code: int | None = None

    def relative_to(self, directory: str | Path) -> ScriptError:
        """A copy whose texts name files relative to ``directory`` (the simulation directory)."""
        return dataclasses.replace(
            self,
            msg=relative_paths(self.msg, directory),
            file_name=relative_paths(self.file_name, directory),
            line_text=relative_paths(self.line_text, directory),
            traceback=relative_paths(self.traceback, directory),
        )

    def payload(self, sim_id: str) -> dict[str, Any]:
        """The body of the message published on ``[P/]nrp_simulation/<id>/runtime_error``."""
        return {
            "sim_id": str(sim_id),
            "msg": self.msg,
            "error_type": str(self.error_type),
            "fileName": self.file_name,
            "line_number": self.line_number,
            "offset": self.offset,
            "line_text": self.line_text,
            **({"exit_code": self.exit_code} if self.exit_code is not None else {}),
        }

    def report(self, sim_id: str) -> dict[str, Any]:
        """What the REST server shows: the published fields and the traceback."""
        return {**self.payload(sim_id), "traceback": self.traceback}


class SimulationServerError(Exception):
    """Base class of the errors raised by the Simulation Server itself."""


class ConfigurationError(SimulationServerError):
    """The experiment configuration cannot be read, parsed or validated."""


class ScriptLoadError(SimulationServerError):
    """The main script or the nrp-core client could not be loaded; ``report`` says how."""

    def __init__(self, report: ScriptError) -> None:
        super().__init__(report.msg)
        self.report = report


# nrp-core names the failing part as ``Function "tf_1" (tf_1.py:7): <error>`` or
# ``Engine "python_1" (engine_1.py:20): <error>`` (older wording: ``Engine "x" failed in runLoop (...)``)
_NAMED_FAILURE = re.compile(
    r'^(?:Function|Engine) "(?P<name>[^"]+)"(?: failed in (?P<op>\S+?))?'
    r"(?P<where> \([^()]*\))?: (?P<error>.*)$",
    re.DOTALL,
)


def _canonical_detail(first_line: str) -> str:
    """``<engine or function name> (<file>:<line>): <error>``, rewritten from nrp-core's wording."""
    match = _NAMED_FAILURE.match(first_line)
    if match is None:
        return first_line
    detail = f"{match['name']}{match['where'] or ''}: {match['error']}"
    return f"{detail} (in {match['op']})" if match["op"] else detail


class NrpCoreRunError(RuntimeError):
    """A function or an engine failed inside ``nrp.run_loop``.

    Raised by the ``nrp`` object in place of the client's ``RuntimeError``. It is still a
    ``RuntimeError``, so scripts that catch that keep working.

    Attributes:
        detail: ``<engine or function name> (<file>:<line>): <error>``, the first line of the
            client's message.
        client_traceback: the rest of the client's message (the failing function's traceback).
    """

    def __init__(self, detail: str, client_traceback: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.client_traceback = client_traceback

    @classmethod
    def from_client_error(cls, exc: BaseException) -> NrpCoreRunError:
        """Build one from the client's ``Request failed with error "<msg>". ...`` exception."""
        text = str(exc)
        head = 'Request failed with error "'
        tail = '". The only possible action now is "shutdown()".'
        if text.startswith(head):
            text = text[len(head) :]
            if text.endswith(tail):
                text = text[: -len(tail)]
            elif text.endswith('"'):
                text = text[:-1]
        first, _, rest = text.strip().partition("\n")
        detail = _canonical_detail(first.strip())
        return cls(detail or type(exc).__name__, rest.strip())
