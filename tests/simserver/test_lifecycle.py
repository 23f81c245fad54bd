"""SimulationServerLifecycle driving a real script runner: what the Simulation Server does on each
lifecycle transition (initialize loads the script, start runs it, pause holds it, stop ends it).

These tests fire the triggers locally (no broker); the MQTT side is covered by test_server.py.
"""

from __future__ import annotations

import pytest

from hbp_nrp_commons.lifecycle import InvalidTransitionError
from hbp_nrp_commons.settings import MqttSettings
from hbp_nrp_simserver.errors import ScriptLoadError
from hbp_nrp_simserver.lifecycle import SimulationServerLifecycle
from hbp_nrp_simserver.notifier import status_payload
from tests.helpers.waiting import HANG, WatchedEvent, wait_event

from .helpers import set_timeout, wait_until


@pytest.fixture
def make_lifecycle(runner_factory):
    def build(script: str):
        runner, notifier = runner_factory(script)
        lifecycle = SimulationServerLifecycle(0, MqttSettings(), runner, notifier, local=True)
        notifier.status_source = lambda: status_payload(lifecycle.state, *runner.times())
        return lifecycle, runner, notifier

    return build


def states(notifier) -> list[str]:
    return [s["state"] for s in notifier.statuses if "state" in s]


def test_initialize_start_complete_stop(make_lifecycle):
    lifecycle, runner, notifier = make_lifecycle(
        "while True:\n    try:\n        nrp.run_loop(5)\n    except NRPSimulationTimeout:\n        break\n"
    )
    with pytest.raises(InvalidTransitionError):
        lifecycle.started()
    lifecycle.initialized()
    assert lifecycle.state == "paused" and runner.initialized
    lifecycle.started()
    wait_until(lambda: lifecycle.state == "completed")
    assert lifecycle.state == "completed"
    assert runner.times()[1] == pytest.approx(1.0)
    lifecycle.stopped()
    assert lifecycle.done_event.wait(HANG)
    assert lifecycle.state == "stopped" and runner.client is None
    assert states(notifier) == ["paused", "started", "completed", "stopped"]


def test_pause_holds_the_script_and_stop_while_paused_ends_it(make_lifecycle, experiment):
    set_timeout(experiment, 1000)
    lifecycle, runner, notifier = make_lifecycle("while True:\n    nrp.run_loop(1)\n")
    runner.control.started = WatchedEvent()  # tells when the script blocks at the pause point
    lifecycle.initialized()
    lifecycle.started()
    wait_until(lambda: runner.wrapper.steps > 0, message="the script to run a step")
    lifecycle.paused()
    wait_event(runner.control.started.waiting, message="the script to wait at the pause point")
    held = runner.times()[1]
    assert runner.is_alive
    assert runner.times()[1] == held
    lifecycle.stopped()
    assert lifecycle.done_event.wait(HANG)
    assert notifier.errors == []
    assert "completed" not in states(notifier)


def test_stop_during_a_long_run_loop(make_lifecycle, experiment):
    set_timeout(experiment, 1000)
    lifecycle, runner, notifier = make_lifecycle("nrp.run_loop(90000)\n")
    lifecycle.initialized()
    lifecycle.started()
    wait_until(lambda: runner.client.simulation_time_ns > 0, message="the long run_loop to run a step")
    assert runner.wrapper.is_running
    lifecycle.stopped()
    assert lifecycle.state == "stopped"
    assert 0 < runner.wrapper.steps < 90000
    assert "completed" not in states(notifier)


def test_script_error_still_completes(make_lifecycle):
    lifecycle, runner, notifier = make_lifecycle("nrp.run_loop(1)\nraise KeyError('k')\n")
    lifecycle.initialized()
    lifecycle.started()
    wait_until(lambda: lifecycle.state == "completed")
    assert lifecycle.state == "completed"
    assert notifier.errors[0]["line_number"] == 2
    lifecycle.stopped()


def test_local_initialize_failure_fails_the_lifecycle(make_lifecycle):
    lifecycle, runner, notifier = make_lifecycle("if True\n")
    with pytest.raises(ScriptLoadError):
        lifecycle.initialized()
    assert lifecycle.state == "failed"
    assert lifecycle.done_event.wait(HANG)
    assert notifier.errors[0]["error_type"] == "Compile"
    assert states(notifier)[-1] == "failed"


def test_script_that_ends_at_once_still_completes(make_lifecycle):
    # the script may end while ``started`` is still being applied
    for _ in range(5):
        lifecycle, runner, notifier = make_lifecycle("pass\n")
        lifecycle.initialized()
        lifecycle.started()
        wait_until(lambda: lifecycle.state == "completed", interval=0.005)  # noqa: B023 - called at once
        assert lifecycle.state == "completed"
        lifecycle.stopped()


def test_script_that_ends_while_paused_completes_when_resumed_without_running_again(
    make_lifecycle, experiment
):
    # paused -> completed is no transition: the script's end is kept until the simulation resumes
    gate = experiment / "gate"
    lifecycle, runner, notifier = make_lifecycle(
        "import pathlib, time\n"
        "nrp.run_loop(1)\n"
        f"while not pathlib.Path({str(gate)!r}).exists():\n"
        "    time.sleep(0.01)\n"
        "file_logger.info('script end')\n"
    )
    lifecycle.initialized()
    lifecycle.started()
    wait_until(lambda: runner.wrapper.steps >= 1)
    lifecycle.paused()
    gate.touch()
    assert runner.wait(HANG)  # the completion callback has run in the script thread
    assert lifecycle.state == "paused"
    lifecycle.started()
    assert lifecycle.state == "completed"  # at once, in the same transition
    assert runner.wait(HANG)
    assert runner.wrapper.steps == 1  # the script did not run a second time
    log = (experiment / "main_script_0.log").read_text()
    assert log.count("script end") == 1
    assert states(notifier) == ["paused", "started", "paused", "started", "completed"]
    lifecycle.stopped()
    assert lifecycle.done_event.wait(HANG)


def test_stop_after_the_script_ended_while_paused(make_lifecycle, experiment):
    gate = experiment / "gate"
    lifecycle, runner, notifier = make_lifecycle(
        "import pathlib, time\n"
        "nrp.run_loop(1)\n"
        f"while not pathlib.Path({str(gate)!r}).exists():\n"
        "    time.sleep(0.01)\n"
    )
    lifecycle.initialized()
    lifecycle.started()
    lifecycle.paused()
    gate.touch()  # the script ends after the pause
    assert runner.wait(HANG)
    lifecycle.stopped()
    assert lifecycle.done_event.wait(HANG)
    assert "completed" not in states(notifier)
