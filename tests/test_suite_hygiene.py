"""Guards that keep the test suite from flaking on a busy machine.

Every ``tests/**/*.py`` file is parsed and checked for three things:

- a ``time.sleep(...)`` or ``asyncio.sleep(...)`` call stands in for an event unless its line says
  why it may stay (``# sleep-ok: <why>``: a script that simulates work, the poll interval of a
  wait helper). Tests wait for the event itself (``tests.helpers.waiting``);
- a fixed port number (a literal other than 0 passed to ``bind``, as ``port=``, or after
  ``--port``) collides with other runs and other services: servers bind port 0 and print the port;
- an assert on a measured elapsed time (a difference of ``time.monotonic()``, ``perf_counter()``
  or ``time.time()`` readings) fails when the machine is slow. Tests check the behaviour;
  latencies are measured by ``benchmarks/``.

Sleeps and ports inside string literals (scripts that tests run) are not calls, so not flagged.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SLEEP_OK = "# sleep-ok:"
SLEEP_MODULES = {"time", "asyncio"}
CLOCKS = {"monotonic", "perf_counter", "time", "monotonic_ns", "perf_counter_ns", "time_ns"}
PORT_FLAGS = {"--port", "--storage-port", "--mqtt-port", "-p"}


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    kind: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.text}"


# -- the scanner ---------------------------------------------------------------------------------


def scan(source: str, path: str = "<snippet>") -> list[Problem]:
    """Every problem in one file's ``source``."""
    tree = ast.parse(source, filename=path)
    lines = source.splitlines()
    return [
        *_sleeps(tree, lines, path),
        *_fixed_ports(tree, lines, path),
        *_elapsed_asserts(tree, lines, path),
    ]


def _line(lines: list[str], number: int) -> str:
    return lines[number - 1].strip() if 0 < number <= len(lines) else ""


def _sleeps(tree: ast.AST, lines: list[str], path: str) -> Iterator[Problem]:
    bare = _names_imported_from(tree, SLEEP_MODULES, "sleep")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        is_sleep = (
            isinstance(func, ast.Attribute)
            and func.attr == "sleep"
            and isinstance(func.value, ast.Name)
            and func.value.id in SLEEP_MODULES
        ) or (isinstance(func, ast.Name) and func.id in bare)
        if not is_sleep:
            continue
        span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        if any(_has_reason(_line(lines, n)) for n in span):
            continue
        yield Problem(path, node.lineno, "sleep without '# sleep-ok: <why>'", _line(lines, node.lineno))


def _has_reason(line: str) -> bool:
    _, found, reason = line.partition(SLEEP_OK)
    return bool(found and reason.strip())


def _names_imported_from(tree: ast.AST, modules: set[str], name: str) -> set[str]:
    """Local names bound to ``module.name`` by ``from module import name [as alias]``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in modules:
            found |= {alias.asname or alias.name for alias in node.names if alias.name == name}
    return found


def _literal_port(node: ast.AST) -> int | None:
    """The port a literal names (an int, or a string of digits), if it is one other than 0."""
    if isinstance(node, ast.Constant) and not isinstance(node.value, bool):
        value = node.value
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            port = int(value)
            return port if port != 0 else None
    return None


def _fixed_ports(tree: ast.AST, lines: list[str], path: str) -> Iterator[Problem]:
    for node in ast.walk(tree):
        port = None
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            # sock.bind((host, 1883))
            if name == "bind" and node.args and isinstance(node.args[0], ast.Tuple | ast.List):
                address = node.args[0].elts
                port = _literal_port(address[1]) if len(address) > 1 else None
            # anything(port=1883)
            for keyword in node.keywords:
                if keyword.arg == "port" and port is None:
                    port = _literal_port(keyword.value)
        elif isinstance(node, ast.List | ast.Tuple):
            # [..., "--port", "1883", ...]
            for flag, value in zip(node.elts, node.elts[1:], strict=False):
                if isinstance(flag, ast.Constant) and flag.value in PORT_FLAGS and port is None:
                    port = _literal_port(value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # "--port=1883" or "... --port 1883 ..." in one string
            words = node.value.replace("=", " ").split()
            for flag, value in zip(words, words[1:], strict=False):
                if flag in PORT_FLAGS and value.isdigit() and int(value) != 0 and port is None:
                    port = int(value)
        if port is not None:
            line = getattr(node, "lineno", 0)
            yield Problem(path, line, f"fixed port {port} (bind port 0 instead)", _line(lines, line))


def _scopes(tree: ast.Module) -> Iterator[ast.AST]:
    """The module's own statements, and each outermost function (nested functions included)."""
    functions: list[ast.AST] = []

    def collect(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append(child)
            else:
                collect(child)

    collect(tree)
    module_level = ast.Module(
        body=[
            s for s in tree.body if not isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ],
        type_ignores=[],
    )
    yield module_level
    yield from functions


def _is_clock_call(node: ast.AST, bare: set[str]) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr in CLOCKS and isinstance(func.value, ast.Name) and func.value.id == "time"
    return isinstance(func, ast.Name) and func.id in bare


@dataclass
class _Clocks:
    """What one scope knows about clock readings."""

    bare: set[str]  # clock functions imported by name (``from time import monotonic``)
    readings: set[str]  # expressions holding readings: ``began``, ``ended`` (its items too)
    deadlines: set[str]  # readings plus an offset: ``deadline = time.monotonic() + 30``

    def is_reading(self, node: ast.AST) -> bool:
        return _is_clock_call(node, self.bare) or self._named_in(node, self.readings)

    def is_deadline(self, node: ast.AST) -> bool:
        return self._named_in(node, self.deadlines)

    @staticmethod
    def _named_in(node: ast.AST, names: set[str]) -> bool:
        if ast.unparse(node) in names:
            return True
        return isinstance(node, ast.Subscript) and ast.unparse(node.value) in names

    def is_elapsed(self, node: ast.AST) -> bool:
        """``later - earlier`` of readings; ``deadline - now`` is the time left of a wait, not elapsed."""
        if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub)):
            return False
        if self.is_deadline(node.left) or self.is_deadline(node.right):
            return False
        return self.is_reading(node.left) or self.is_reading(node.right)


def _elapsed_asserts(tree: ast.Module, lines: list[str], path: str) -> Iterator[Problem]:
    bare = set().union(*(_names_imported_from(tree, {"time"}, clock) for clock in CLOCKS))
    for scope in _scopes(tree):
        nodes = list(ast.walk(scope))
        clocks = _Clocks(bare, set(), set())
        for node in nodes:
            # ``began = time.monotonic()``; ``deadline = time.monotonic() + 5``
            if isinstance(node, ast.Assign) and any(_is_clock_call(n, bare) for n in ast.walk(node.value)):
                targets = {ast.unparse(t) for t in node.targets}
                if isinstance(node.value, ast.BinOp) and isinstance(node.value.op, ast.Add):
                    clocks.deadlines |= targets
                else:
                    clocks.readings |= targets
            # ``ended.append(time.monotonic())``: the items of ``ended`` are readings
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "append"
                and any(_is_clock_call(a, bare) for a in node.args)
            ):
                clocks.readings.add(ast.unparse(node.func.value))
        # elapsed: whatever is assigned a difference of readings, e.g. ``elapsed = now - began``
        elapsed: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Assign) and any(clocks.is_elapsed(n) for n in ast.walk(node.value)):
                elapsed |= {ast.unparse(t) for t in node.targets}
        for node in nodes:
            if isinstance(node, ast.Assert) and any(
                clocks.is_elapsed(n) or ast.unparse(n) in elapsed for n in ast.walk(node.test)
            ):
                kind = "assert on a measured elapsed time"
                yield Problem(path, node.lineno, kind, _line(lines, node.lineno))


def scan_suite() -> list[Problem]:
    problems = []
    for path in sorted(TESTS.rglob("*.py")):
        relative = path.relative_to(TESTS.parent).as_posix()
        problems += scan(path.read_text(), relative)
    return problems


# -- the guards ----------------------------------------------------------------------------------

KINDS = {
    "sleeps": "sleep without",
    "fixed_ports": "fixed port",
    "elapsed_time_asserts": "assert on a measured elapsed time",
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_suite_has_none_of(kind: str) -> None:
    found = [str(p) for p in scan_suite() if p.kind.startswith(KINDS[kind])]
    assert not found, "\n".join(["", *found])


# -- the scanner flags what it must, and nothing else --------------------------------------------

BAD = textwrap.dedent(
    """
    import socket
    import time
    from time import sleep as nap, perf_counter


    def test_bad(server):
        time.sleep(0.5)
        nap(1)
        time.sleep(0.1)  # sleep-ok:
        began = time.monotonic()
        server.stop()
        assert time.monotonic() - began < 0.5
        start = perf_counter()
        elapsed = perf_counter() - start
        assert 1.0 <= elapsed < 5
        ended = []
        ended.append(time.monotonic())
        assert ended[0] - began < 0.2
        results = {}
        results["elapsed"] = time.time() - start
        assert results["elapsed"] >= 1.5
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 1883))
        run(["nrp", "up", "--port", "8080"])
        connect(host="localhost", port=5345)
        run("nrp storage --port=9000")


    async def test_async_bad():
        import asyncio

        await asyncio.sleep(0.2)
    """
)

GOOD = textwrap.dedent(
    """
    import socket
    import time

    SCRIPT = "import time\\nwhile True:\\n    time.sleep(0.01)\\n"


    def test_good(server, wait_until):
        time.sleep(0.01)  # sleep-ok: the engine simulates a slow step
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            break
        assert time.monotonic() < deadline
        left = deadline - time.monotonic()
        assert left > 0, "the wait timed out"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(5)
        run(["nrp", "up", "--port", "0", "--storage-port", str(server.port)])
        started = server.start()
        assert started.status_code == 200
        assert server.real_time > 0 and server.steps - 1 >= 0
    """
)


def test_the_scanner_flags_each_bad_pattern() -> None:
    found = {(p.line, p.kind.split(" ")[0]) for p in scan(BAD)}
    lines = BAD.splitlines()

    def line_of(needle: str) -> int:
        return next(n for n, text in enumerate(lines, 1) if needle in text)

    expected = {
        (line_of("time.sleep(0.5)"), "sleep"),
        (line_of("nap(1)"), "sleep"),
        (line_of("# sleep-ok:"), "sleep"),  # a sleep-ok comment needs a reason
        (line_of("asyncio.sleep(0.2)"), "sleep"),
        (line_of("assert time.monotonic() - began"), "assert"),
        (line_of("assert 1.0 <= elapsed"), "assert"),
        (line_of("assert ended[0] - began"), "assert"),
        (line_of('assert results["elapsed"]'), "assert"),
        (line_of("1883"), "fixed"),
        (line_of('"8080"'), "fixed"),
        (line_of("port=5345"), "fixed"),
        (line_of("nrp storage --port"), "fixed"),
    }
    assert found == expected


def test_the_scanner_accepts_the_good_patterns() -> None:
    assert scan(GOOD) == []
