"""The script runner: the globals a main script sees, how a script ends (completed, stopped, failed
with a typed error) and the per-run script log file."""

from __future__ import annotations

import textwrap

import pytest

from hbp_nrp_simserver.config import load_experiment_config
from hbp_nrp_simserver.errors import ErrorType, ScriptLoadError

from .helpers import (
    Finished,
    add_failing_function,
    line_of,
    make_client,
    payload_keys,
    run_to_end,
    set_timeout,
    wait_until,
)

LOOP = """
while True:
    try:
        nrp.run_loop(10)
    except NRPSimulationTimeout:
        break
file_logger.info("finished at %.2f s", nrp.simulation_time)
"""


def test_normal_script_runs_to_the_budget_and_logs(runner_factory, experiment):
    runner, notifier = runner_factory(LOOP)
    assert run_to_end(runner) is None
    assert notifier.errors == []
    assert runner.wrapper.simulation_time == pytest.approx(1.0)
    assert runner.wrapper.simulation_time_remaining == pytest.approx(0.0)
    assert runner.times()[0] > 0
    runner.shutdown()
    lines = (experiment / "main_script_0.log").read_text().splitlines()
    assert lines[0] == "Writing logs to 'main_script_0.log'"
    assert "finished at 1.00 s" in lines


def test_script_globals(runner_factory, experiment, monkeypatch):
    monkeypatch.chdir(experiment)  # the simserver runs scripts in the simulation directory
    script = """
    import json
    seen = {
        "name": __name__,
        "file": __file__,
        "stop_is_base": issubclass(NRPStopExecution, BaseException)
        and not issubclass(NRPStopExecution, Exception),
        "timeout_is_exception": issubclass(NRPSimulationTimeout, Exception),
        "logging": logging.__name__,
        "logger": file_logger.name,
        "sim_id": nrp.sim_id,
        "max": nrp.max_timesteps,
    }
    if __name__ == "__main__":
        with open("globals.json", "w") as out:
            json.dump(seen, out)
    """
    runner, _ = runner_factory(script)
    assert run_to_end(runner) is None
    import json

    seen = json.loads((experiment / "globals.json").read_text())
    assert seen == {
        "name": "__main__",
        "file": "main_script.py",
        "stop_is_base": True,
        "timeout_is_exception": True,
        "logging": "logging",
        "logger": "hbp_nrp_simserver.server.nrp_script_runner.main_script",
        "sim_id": "0",
        "max": 100,
    }


def test_raising_script_reports_runtime_error_on_its_line(runner_factory):
    script = """
    nrp.run_loop(1)
    value = 2
    raise ValueError("broken at %d" % value)
    """
    runner, notifier = runner_factory(script)
    error = run_to_end(runner)
    assert error is not None and error.error_type == ErrorType.RUNTIME
    assert notifier.errors == [
        {
            "sim_id": "0",
            "msg": "broken at 2",
            "error_type": "Runtime",
            "fileName": "main_script.py",
            "line_number": 3,
            "offset": 1,
            "line_text": 'raise ValueError("broken at %d" % value)',
        }
    ]
    assert list(notifier.errors[0]) == payload_keys()
    assert "ValueError" in error.traceback


def test_name_error_is_a_compile_error_with_the_script_line(runner_factory):
    script = """
    def helper():
        return undefined_name + 1

    nrp.run_loop(1)
    helper()
    """
    runner, notifier = runner_factory(script)
    error = run_to_end(runner)
    assert error is not None
    assert error.error_type == ErrorType.COMPILE
    assert error.msg == "NameError in main script (Line 2): name 'undefined_name' is not defined"
    assert (error.line_number, error.line_text) == (2, "return undefined_name + 1")
    assert notifier.errors[0]["error_type"] == "Compile"


def test_attribute_error_is_a_compile_error(runner_factory):
    runner, _ = runner_factory("nrp.no_such_member()\n")
    error = run_to_end(runner)
    assert error is not None and error.error_type == ErrorType.COMPILE
    assert error.msg.startswith("AttributeError in main script (Line 1): ")
    assert error.line_number == 1


def test_syntax_error_fails_at_load_with_compile_error(runner_factory):
    script = """
    nrp.run_loop(1)
    if True
        pass
    """
    runner, notifier = runner_factory(script)
    with pytest.raises(ScriptLoadError) as caught:
        runner.initialize()
    report = caught.value.report
    assert report.error_type == ErrorType.COMPILE
    assert report.msg.startswith("SyntaxError in (Line 2): ")
    assert (report.line_number, report.line_text) == (2, "if True")
    assert report.offset > 0
    assert notifier.errors[0]["error_type"] == "Compile"
    assert notifier.errors[0]["line_number"] == 2
    assert runner.client is None and not runner.initialized


def test_missing_script_is_a_loading_error(runner_factory, experiment):
    runner, notifier = runner_factory("pass\n")
    (experiment / "main_script.py").unlink()
    with pytest.raises(ScriptLoadError):
        runner.initialize()
    assert notifier.errors[0]["error_type"] == "Loading"
    assert notifier.errors[0]["msg"].startswith("Error loading main script : ")


def test_client_initialization_failure_is_a_loading_error(runner_factory, experiment):
    def broken_client():
        raise FileNotFoundError("no such engine file")

    runner, notifier = runner_factory("pass\n", client_factory=broken_client)
    with pytest.raises(ScriptLoadError):
        runner.initialize()
    assert notifier.errors[0]["error_type"] == "Loading"
    assert notifier.errors[0]["msg"] == (
        "Error initializing nrp_core client. Check logs. Simulation ID 0: no such engine file"
    )


def test_uncaught_timeout_is_sim_timeout_without_line(runner_factory):
    runner, notifier = runner_factory("while True:\n    nrp.run_loop(40)\n")
    error = run_to_end(runner)
    assert error is not None
    assert notifier.errors == [
        {
            "sim_id": "0",
            "msg": "The number of iteration requested will exceed the timeout",
            "error_type": "SimTimeout",
            "fileName": "main_script.py",
            "line_number": -1,
            "offset": -1,
            "line_text": "",
        }
    ]
    assert runner.wrapper.steps == 80


def test_function_error_inside_run_loop_names_the_function(runner_factory, experiment):
    config_file = add_failing_function(experiment)
    script = """
    file_logger.info("starting")
    while True:
        nrp.run_loop(3)
    """
    runner, notifier = runner_factory(
        script,
        config=load_experiment_config(experiment / config_file),
        client_factory=lambda: make_client(experiment, config_file),
    )
    error = run_to_end(runner)
    assert error is not None and error.error_type == ErrorType.RUNTIME
    assert error.msg.startswith("tf_fail (tf_fail.py:"), error.msg
    tf_line = line_of((experiment / "tf_fail.py").read_text(), "raise ValueError")
    assert error.msg.startswith(f"tf_fail (tf_fail.py:{tf_line}): "), error.msg
    assert "tf failure at 50 ms" in error.msg
    assert (error.line_number, error.line_text) == (3, "nrp.run_loop(3)")
    assert notifier.errors[0]["line_number"] == 3
    assert not runner.wrapper.is_running and runner.wrapper.real_time > 0


def test_stop_ends_a_running_script_quietly(runner_factory, experiment):
    set_timeout(experiment, 1000)
    runner, notifier = runner_factory("while True:\n    nrp.run_loop(1)\n")
    runner.initialize()
    finished = Finished()
    runner.start(finished)
    wait_until(lambda: runner.wrapper.steps > 0, message="the script to run a step")
    assert runner.stop()
    assert finished.wait() is None
    assert notifier.errors == []
    assert runner.wrapper.steps > 0


def test_stop_while_paused_before_the_first_step(runner_factory):
    runner, notifier = runner_factory("nrp.run_loop(1)\n")
    runner.initialize()
    finished = Finished()
    runner.start(finished)
    runner.pause()  # may or may not be before the first run_loop: both must stop cleanly
    runner.stop()
    assert finished.wait() is None
    assert notifier.errors == []


def test_second_start_does_not_start_another_thread(runner_factory, experiment, caplog):
    set_timeout(experiment, 1000)  # the script must not reach its step budget before the second start
    runner, _ = runner_factory("while True:\n    nrp.run_loop(1)\n")
    runner.initialize()
    finished = Finished()
    runner.start(finished)
    runner.pause()
    with caplog.at_level("INFO"):
        runner.start(finished)
    assert "Another script is running" in caplog.text
    runner.stop()
    assert finished.wait() is None


def test_script_file_is_compiled_with_real_name(runner_factory, experiment):
    runner, _ = runner_factory("x = 1\n")
    code = runner.load_script()
    assert code.co_filename == str(experiment.resolve() / "main_script.py")


def test_script_logger_does_not_propagate(runner_factory, experiment, caplog):
    runner, _ = runner_factory(textwrap.dedent('file_logger.debug("only in the file")\n'))
    runner.initialize()
    finished = Finished()
    with caplog.at_level("DEBUG"):
        runner.start(finished)
        assert finished.wait() is None
    assert "only in the file" not in caplog.text
    assert "only in the file" in (experiment / "main_script_0.log").read_text()


def test_engine_error_inside_run_loop_names_the_engine(runner_factory, experiment):
    engine = (experiment / "engine_1.py").read_text()
    marker = "    def runLoop(self, timestep_ns):\n"
    assert marker in engine
    engine = engine.replace(
        marker,
        marker + "        if self._time_ns >= 30000000:\n            raise RuntimeError('engine broke')\n",
    )
    (experiment / "engine_1.py").write_text(engine)
    engine_line = line_of(engine, "raise RuntimeError('engine broke')")
    script = "file_logger.info('go')\nwhile True:\n    nrp.run_loop(2)\n"
    # engines in their own processes: the error crosses the process boundary
    runner, notifier = runner_factory(script, client_factory=lambda: make_client(experiment, args=""))
    error = run_to_end(runner, 20)
    assert error is not None and error.error_type == ErrorType.RUNTIME
    assert error.msg.startswith(f"python_1 (engine_1.py:{engine_line}): "), error.msg
    assert "engine broke" in error.msg
    assert (error.line_number, error.line_text) == (3, "nrp.run_loop(2)")
