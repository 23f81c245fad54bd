"""Engine processes: launch, errors, timeouts, and never outliving the loop."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from nrp_core.client import NrpCore
from nrp_core.engines.python_json.server_callbacks import EngineServer
from tests.helpers.waiting import HANG, wait_until
from tests.nrp_core.loop_helpers import COUNTING_ENGINE, TF_EXCHANGE, process_gone, write_experiment

REPO = Path(__file__).resolve().parents[2]


def _engine_pids(client: NrpCore) -> list[int]:
    return [engine.pid for engine in client._loop.engines]


def _wait_gone(pids: list[int], message: str = "the engine processes to end") -> None:
    wait_until(lambda: all(process_gone(pid) for pid in pids), message=message)


def test_engines_run_in_their_own_processes_in_the_experiment_directory(tmp_path: Path) -> None:
    engine = """
    import os
    import sys
    from nrp_core.engines.python_json import EngineScript

    class Script(EngineScript):
        def initialize(self):
            self._registerDataPack("where")
            where = {"cwd": os.getcwd(), "pid": os.getpid(), "argv": sys.argv[1:]}
            where["var"] = os.environ.get("MY_VAR")
            self._setDataPack("where", where)
    """
    tf = """
    from nrp_core import *

    @EngineDataPack("where", DataPackIdentifier("where", "probe"))
    @TransceiverFunction("probe")
    def tf(where):
        return []
    """
    write_experiment(tmp_path, {"probe": (engine, 0.01)}, {"tf": tf}, in_process=False)
    client = NrpCore(
        "localhost:5345",
        experiment_folder=str(tmp_path),
        log_output=None,
        overrides=[
            'EngineConfigs.0.EngineEnvParams=["MY_VAR=$HOME/x"]',
            'EngineConfigs.0.EngineProcStartParams=["--a b"]',
        ],
    )
    [where] = client.initialize()
    pids = _engine_pids(client)
    client.shutdown()
    assert where["cwd"] == str(tmp_path.resolve())
    assert where["pid"] == pids[0] != os.getpid()
    assert where["var"] == os.environ["HOME"] + "/x"
    assert where["argv"][:2] == ["--a", "b"] and where["argv"][2] == "--engine=probe"
    assert where["argv"][3].startswith("--control-fd=")
    _wait_gone(pids)


def test_in_process_engines_are_told_the_experiment_directory(tmp_path: Path) -> None:
    engine = """
    import os
    from nrp_core.engines.python_json import EngineScript

    class Script(EngineScript):
        def initialize(self):
            self._registerDataPack("where")
            self._setDataPack("where", {"dir": self._config["ExperimentDirectory"], "pid": os.getpid()})
    """
    tf = """
    from nrp_core import *

    @EngineDataPack("where", DataPackIdentifier("where", "probe"))
    @TransceiverFunction("probe")
    def tf(where):
        return []
    """
    write_experiment(tmp_path, {"probe": (engine, 0.01)}, {"tf": tf}, in_process=True)
    client = NrpCore("localhost:5345", experiment_folder=str(tmp_path), log_output=None)
    [where] = client.initialize()
    client.shutdown()
    assert where["pid"] == os.getpid()
    assert Path(where["dir"]).resolve() == tmp_path.resolve()


FAILING_ENGINE = """
from nrp_core.engines.python_json import EngineScript


class Script(EngineScript):
    def initialize(self):
        self._registerDataPack("state")

    def runLoop(self, timestep_ns):
        if self._time_ns >= 30_000_000:
            self.explode()

    def explode(self):
        raise ValueError("engine exploded at 30 ms")
"""


@pytest.mark.parametrize("in_process", [False, True], ids=["engine-process", "in-process"])
def test_an_engine_exception_fails_the_simulation_naming_engine_file_and_line(
    tmp_path: Path, in_process: bool
) -> None:
    write_experiment(
        tmp_path, {"ok": (COUNTING_ENGINE, 0.01), "bad": (FAILING_ENGINE, 0.01)}, in_process=in_process
    )
    client = NrpCore("localhost:5345", experiment_folder=str(tmp_path), log_output=None)
    client.initialize()
    pids = [] if in_process else _engine_pids(client)
    client.run_loop(2)
    with pytest.raises(RuntimeError) as info:
        client.run_loop(3)
    text = str(info.value)
    assert text.startswith('Request failed with error "Engine "bad" (bad.py:14): ')
    assert "ValueError: engine exploded at 30 ms" in text
    assert 'bad.py", line 11, in runLoop' in text and 'bad.py", line 14, in explode' in text
    assert "communication failed" not in text.lower()
    assert client.current_state() == "Failed"
    client.shutdown()
    assert client.current_state() == "Created"
    _wait_gone(pids)


@pytest.mark.parametrize("in_process", [False, True], ids=["engine-process", "in-process"])
def test_errors_inside_the_import_machinery_name_the_user_file_and_line(
    tmp_path: Path, in_process: bool
) -> None:
    # The innermost frames of these errors are Python's frozen importlib, not the user's file.
    broken = """
    from nrp_core.engines.python_json import EngineScript

    class Script(EngineScript):
        def initialize(self)
            pass
    """
    importing = """
    from nrp_core.engines.python_json import EngineScript

    class Script(EngineScript):
        def runLoop(self, timestep_ns):
            import no_such_module_here
    """
    write_experiment(tmp_path / "a", {"broken": (broken, 0.01)}, in_process=in_process)
    client = NrpCore("localhost:5345", experiment_folder=str(tmp_path / "a"), log_output=None)
    with pytest.raises(RuntimeError) as info:
        client.initialize()
    client.shutdown()
    assert str(info.value).startswith('Request failed with error "Engine "broken" (broken.py:5): ')
    assert str(info.value).splitlines()[0].count("(broken.py, line 5)") == 1

    write_experiment(tmp_path / "b", {"importing": (importing, 0.01)}, in_process=in_process)
    client = NrpCore("localhost:5345", experiment_folder=str(tmp_path / "b"), log_output=None)
    client.initialize()
    with pytest.raises(RuntimeError) as info:
        client.run_loop(1)
    client.shutdown()
    assert str(info.value).startswith('Request failed with error "Engine "importing" (importing.py:6): ')
    assert "ModuleNotFoundError" in str(info.value)


def test_errors_raised_inside_library_code_name_the_user_frame_that_called_it(tmp_path: Path) -> None:
    # The innermost frame is the standard library's json decoder; the user's line is what helps.
    engine = """
    import json
    from nrp_core.engines.python_json import EngineScript

    class Script(EngineScript):
        def runLoop(self, timestep_ns):
            json.loads("{bad")
    """
    tf = """
    import json
    from nrp_core import *

    @TransceiverFunction("quiet")
    def tf():
        json.loads("{bad")
        return []
    """
    quiet = """
    from nrp_core.engines.python_json import EngineScript

    class Script(EngineScript):
        pass
    """
    write_experiment(tmp_path / "a", {"decoding": (engine, 0.01)}, in_process=False)
    write_experiment(tmp_path / "b", {"quiet": (quiet, 0.01)}, {"tf": tf}, in_process=False)
    first_lines = []
    for folder in ("a", "b"):
        client = NrpCore("localhost:5345", experiment_folder=str(tmp_path / folder), log_output=None)
        client.initialize()
        with pytest.raises(RuntimeError) as info:
            client.run_loop(2)
        client.shutdown()
        first_lines.append(str(info.value).splitlines()[0])
    assert first_lines[0].startswith('Request failed with error "Engine "decoding" (decoding.py:7): ')
    assert first_lines[1].startswith('Request failed with error "Function "tf" (tf.py:7): ')
    assert all("JSONDecodeError" in line and "decoder.py" not in line for line in first_lines)


def test_an_initialize_failure_is_reported_and_cleaned_up(tmp_path: Path) -> None:
    engine = """
    from nrp_core.engines.python_json import EngineScript

    class Script(EngineScript):
        def initialize(self):
            raise KeyError("missing model")
    """
    write_experiment(tmp_path, {"ok": (COUNTING_ENGINE, 0.01), "bad": (engine, 0.01)}, in_process=False)
    client = NrpCore("localhost:5345", experiment_folder=str(tmp_path), log_output=None)
    with pytest.raises(RuntimeError, match=r'Engine "bad" \(bad.py:6\): .*missing model'):
        client.initialize()
    pids = _engine_pids(client)
    assert client.current_state() == "Failed"
    client.shutdown()
    _wait_gone(pids)


def test_an_engine_process_that_dies_is_named(tmp_path: Path) -> None:
    engine = """
    import os
    from nrp_core.engines.python_json import EngineScript

    class Script(EngineScript):
        def runLoop(self, timestep_ns):
            os._exit(7)
    """
    write_experiment(tmp_path, {"dying": (engine, 0.01)}, in_process=False)
    client = NrpCore("localhost:5345", experiment_folder=str(tmp_path), log_output=None)
    client.initialize()
    with pytest.raises(
        RuntimeError, match=r'Engine "dying" failed in run_loop: .*exited unexpectedly \(exit code 7\)'
    ):
        client.run_loop(2)
    client.shutdown()


def test_an_engine_that_dies_while_a_child_of_it_lives_on_is_named(tmp_path: Path) -> None:
    # A forked child (multiprocessing, a helper process) inherits the engine's end of the control
    # channel, so the loop never sees end of file when the engine itself dies.
    engine = """
    import os
    import time
    from nrp_core.engines.python_json import EngineScript

    class Script(EngineScript):
        def initialize(self):
            child = os.fork()
            if child == 0:
                time.sleep(30)
                os._exit(0)
            with open("child.pid", "w") as f:
                f.write(str(child))

        def runLoop(self, timestep_ns):
            os._exit(7)
    """
    write_experiment(tmp_path, {"dying": (engine, 0.01)}, in_process=False)
    client = NrpCore("localhost:5345", experiment_folder=str(tmp_path), log_output=None)
    client.initialize()
    child = int((tmp_path / "child.pid").read_text())
    try:
        response: list = []
        thread = client.run_loop(2, run_async=True, response=response)
        thread.join(HANG)
        assert not thread.is_alive(), "the loop hangs on an engine that died"
        [error] = response
        assert isinstance(error, RuntimeError)
        expected = r'Engine "dying" failed in run_loop: .*exited unexpectedly \(exit code 7\)'
        assert re.search(expected, str(error))
        client.shutdown()
    finally:
        os.kill(child, signal.SIGKILL)


def test_engine_command_timeout(tmp_path: Path) -> None:
    engine = """
    import time
    from nrp_core.engines.python_json import EngineScript

    class Script(EngineScript):
        def runLoop(self, timestep_ns):
            time.sleep(30)
    """
    write_experiment(tmp_path, {"slow": (engine, 0.01)}, in_process=False)
    client = NrpCore(
        "localhost:5345",
        experiment_folder=str(tmp_path),
        log_output=None,
        overrides=["EngineConfigs.0.EngineCommandTimeout=0.3"],
    )
    client.initialize()
    pids = _engine_pids(client)
    # the engine's step lasts 30 s: only the timeout ends the call with this error
    with pytest.raises(
        RuntimeError, match=r'Engine "slow" failed in run_loop: no answer within EngineCommandTimeout'
    ):
        client.run_loop(2)
    client.shutdown()
    _wait_gone(pids)


# Initialize and reset outlast the EngineCommandTimeout the tests below set for steps.
SLOW_START_ENGINE = """
import time
from nrp_core.engines.python_json import EngineScript

class Script(EngineScript):
    def initialize(self):
        time.sleep(1.0)

    def reset(self):
        time.sleep(1.0)
"""


def test_engine_command_timeout_bounds_steps_not_initialize_or_reset(tmp_path: Path) -> None:
    # EngineCommandTimeout is the maximum wait for a step. Loading a brain or a world may take far longer.
    write_experiment(tmp_path, {"slow_start": (SLOW_START_ENGINE, 0.01)}, in_process=False)
    client = NrpCore(
        "localhost:5345",
        experiment_folder=str(tmp_path),
        log_output=None,
        overrides=["EngineConfigs.0.EngineCommandTimeout=0.3"],
    )
    try:
        client.initialize()
        client.run_loop(2)
        client.reset()
        assert client.current_state() == "Initialized"
    finally:
        client.shutdown()


# -- engines never outlive the loop's process ----------------------------------------------------------

LOOP_SCRIPT = """
import sys
from nrp_core import NrpCore

experiment, log = sys.argv[1], sys.argv[2]
client = NrpCore("x", experiment_folder=experiment, log_output=log, overrides=["SimulationTimeout=1000"])
client.initialize()
print("PIDS", *[engine.pid for engine in client._loop.engines], flush=True)
client.run_loop(3)
open(sys.argv[3], "w").close()  # the loop steps
client.run_loop(0)
"""

SLEEPING_ENGINE = """
import time
from nrp_core.engines.python_json import EngineScript

class Script(EngineScript):
    def runLoop(self, timestep_ns):
        if self._time_ns >= 50_000_000:
            open("sleeping", "w").close()
            time.sleep(600)  # busy in a long step when the loop dies
"""


def _run_loop_process(experiment: Path, tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    script = tmp_path / "loop_process.py"
    script.write_text(textwrap.dedent(LOOP_SCRIPT))
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(experiment),
            str(tmp_path / "engines.log"),
            str(tmp_path / "stepped"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("PIDS"), line
    return proc, [int(pid) for pid in line.split()[1:]]


@pytest.mark.parametrize("engines", ["stepping", "busy-in-a-long-step"])
def test_sigkill_of_the_loop_process_leaves_no_engine_behind(tmp_path: Path, engines: str) -> None:
    if engines == "stepping":
        experiment = tmp_path / "tf_exchange"
        shutil.copytree(TF_EXCHANGE, experiment)
    else:
        experiment = tmp_path / "sleepy"
        write_experiment(
            experiment, {"a": (SLEEPING_ENGINE, 0.01), "b": (COUNTING_ENGINE, 0.01)}, in_process=False
        )
    proc, pids = _run_loop_process(experiment, tmp_path)
    assert len(pids) == 2
    wait_until((tmp_path / "stepped").exists, message="the loop to step")
    if engines == "busy-in-a-long-step":
        wait_until((experiment / "sleeping").exists, message="engine a to start its long step")
    assert not any(process_gone(pid) for pid in pids), "engines run while the loop runs"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(HANG)
    _wait_gone(pids, "the engines of the SIGKILLed loop process to end")


def test_external_processes_start_first_and_stop_at_shutdown(tmp_path: Path) -> None:
    (tmp_path / "external.py").write_text(
        "import json, os, sys, time\n"
        "with open('external.json', 'w') as f:\n"
        "    f.write(json.dumps([os.getpid(), os.environ['EXT_MARK'], sys.argv[1:]]))\n"
        "time.sleep(120)\n"
    )
    external = {
        "ProcCmd": sys.executable,
        "ProcStartParams": ["external.py --flag"],
        "ProcEnvParams": ["EXT_MARK=$HOME!"],
    }
    write_experiment(tmp_path, {"a": (COUNTING_ENGINE, 0.01)}, ExternalProcesses=[external])
    client = NrpCore("localhost:5345", experiment_folder=str(tmp_path), log_output=None)
    client.initialize()
    marker = tmp_path / "external.json"

    def written() -> list | None:
        try:
            return json.loads(marker.read_text())
        except (OSError, ValueError):  # not there yet, or not written in full
            return None

    pid, mark, argv = wait_until(written, message="the external process's marker file")
    assert mark == os.environ["HOME"] + "!" and argv == ["--flag"]
    assert not process_gone(pid)
    client.shutdown()
    _wait_gone([pid], "the external process to end")


# -- an engine server started outside the runtime (EmptyLaunchCommand, JSON over HTTP) -----------------


class _EngineRequestHandler(BaseHTTPRequestHandler):
    """The six POST routes of the JSON-over-HTTP engine protocol in front of an ``EngineServer`` (a test
    double of an engine)."""

    server: _EngineHttpServer

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
        route = self.path.strip("/")
        self.server.routes.append(route)
        try:
            reply, status = getattr(self.server.engine, route)(body), 200
        except Exception as exc:
            reply, status = {"error": type(exc).__name__, "message": str(exc), "traceback": "tb text"}, 500
        payload = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


class _EngineHttpServer(HTTPServer):
    """An ``EngineServer`` behind HTTP, served from a thread while used as a context manager."""

    def __init__(self, base_dir: Path) -> None:
        super().__init__(("127.0.0.1", 0), _EngineRequestHandler)
        self.engine = EngineServer(base_dir)
        self.routes: list[str] = []

    def __enter__(self) -> _EngineHttpServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()

    def overrides(self) -> list[str]:
        """Config overrides that make engine 0 an ``EmptyLaunchCommand`` engine served here."""
        return [
            'EngineConfigs.0.EngineLaunchCommand={"LaunchType":"EmptyLaunchCommand"}',
            f'EngineConfigs.0.ServerAddress="127.0.0.1:{self.server_port}"',
        ]


def test_an_engine_server_started_elsewhere_is_driven_over_http(tmp_path: Path) -> None:
    tf = """
    from nrp_core import *
    from nrp_core.data.nrp_json import JsonDataPack

    @EngineDataPack("state", DataPackIdentifier("state", "remote"))
    @TransceiverFunction("remote")
    def tf(state):
        sent = JsonDataPack("input", "remote")
        sent.data["seen_steps"] = state.data["steps"]
        return [sent]
    """
    with _EngineHttpServer(tmp_path) as http:
        write_experiment(tmp_path, {"remote": (COUNTING_ENGINE, 0.01)}, {"tf": tf}, in_process=False)
        overrides = http.overrides()
        client = NrpCore(
            "localhost:5345", experiment_folder=str(tmp_path), log_output=None, overrides=overrides
        )
        assert client.initialize() == [{"input": None, "steps": 0, "time": 0}]
        client.run_loop(3)
        assert http.engine.script._getDataPack("state") == {
            "input": {"seen_steps": 2},
            "steps": 3,
            "time": 30_000_000,
        }
        client.shutdown()
        assert http.routes[:3] == ["initialize", "get_datapacks", "set_datapacks"]
        assert http.routes[-1] == "shutdown"

        # An engine-side error (500 with error, message, traceback) fails the simulation, naming the route.
        asking = tf.replace('DataPackIdentifier("state", "remote")', 'DataPackIdentifier("nope", "remote")')
        write_experiment(
            tmp_path / "other", {"remote": (COUNTING_ENGINE, 0.01)}, {"tf": asking}, in_process=False
        )
        client = NrpCore(
            "localhost:5345", experiment_folder=str(tmp_path / "other"), log_output=None, overrides=overrides
        )
        with pytest.raises(
            RuntimeError, match=r'Engine "remote" failed in get_datapacks: .*unregistered DataPack'
        ):
            client.initialize()
        client.shutdown()


def test_engine_command_timeout_of_an_http_engine_bounds_steps_only(tmp_path: Path) -> None:
    engine = (
        SLOW_START_ENGINE
        + """
    def runLoop(self, timestep_ns):
        if self._time_ns > 20_000_000:
            time.sleep(2.0)
"""
    )
    with _EngineHttpServer(tmp_path) as http:
        write_experiment(tmp_path, {"remote": (engine, 0.01)}, in_process=False)
        overrides = [*http.overrides(), "EngineConfigs.0.EngineCommandTimeout=0.5"]
        client = NrpCore(
            "localhost:5345", experiment_folder=str(tmp_path), log_output=None, overrides=overrides
        )
        try:
            client.initialize()
            client.run_loop(2)
            client.reset()
            client.run_loop(2)
            with pytest.raises(RuntimeError, match=r'Engine "remote" failed in run_loop: .*[Tt]imeout'):
                client.run_loop(3)
        finally:
            client.shutdown()


@pytest.mark.parametrize(
    ("value", "message"),
    [("{1, 2}", "does not hold JSON data"), ("lambda: None", r"get_datapacks \(reply\)")],
    ids=["not-json", "not-picklable"],
)
def test_an_engine_storing_a_non_json_value_is_named(tmp_path: Path, value: str, message: str) -> None:
    engine = f"""
    from nrp_core.engines.python_json import EngineScript

    class Script(EngineScript):
        def initialize(self):
            self._registerDataPack("state")

        def runLoop(self, timestep_ns):
            self._setDataPack("state", {value})
    """
    tf = """
    from nrp_core import *

    @EngineDataPack("state", DataPackIdentifier("state", "odd"))
    @TransceiverFunction("odd")
    def tf(state):
        return []
    """
    write_experiment(tmp_path, {"odd": (engine, 0.01)}, {"tf": tf}, in_process=False)
    client = NrpCore("localhost:5345", experiment_folder=str(tmp_path), log_output=None)
    client.initialize()
    with pytest.raises(RuntimeError, match=rf'Engine "odd".*{message}'):
        client.run_loop(2)
    client.shutdown()
