"""The ``nrp`` object of main scripts (pause point, stop requests, step budget) on a real in-process
nrp-core client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hbp_nrp_simserver.config import load_experiment_config
from hbp_nrp_simserver.errors import NrpCoreRunError
from hbp_nrp_simserver.wrapper import (
    NrpCoreWrapper,
    NRPSimulationTimeout,
    NRPStopExecution,
    SimulationControl,
    max_timesteps,
)
from tests.helpers.waiting import HANG, WatchedEvent, join, wait_event, wait_until

from .helpers import add_failing_function, make_client, set_timeout


class Spy:
    """Delegates to the real client and records the arguments of ``run_loop``."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[tuple[int, Any]] = []

    def run_loop(self, num_iterations: int, json_data: Any = None) -> Any:
        self.calls.append((num_iterations, json_data))
        return self._client.run_loop(num_iterations, json_data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def make_wrapper(experiment: Path) -> Iterator[Any]:
    clients: list[Any] = []

    def build(config_file: str = "simulation_config.json", control: SimulationControl | None = None):
        config = load_experiment_config(experiment / config_file)
        client = make_client(experiment, config_file)
        client.initialize()
        clients.append(client)
        spy = Spy(client)
        wrapper = NrpCoreWrapper(
            spy, "7", config.timeout, config.timestep, timestep_ns=config.timestep_ns, control=control
        )
        return wrapper, spy

    yield build
    for client in clients:
        client.shutdown()


@pytest.mark.parametrize("name", ["stop", "reset", "shutdown", "initialize"])
def test_lifecycle_methods_are_not_available(name):
    wrapper = NrpCoreWrapper(object(), "0", 1.0, 0.01)  # type: ignore[arg-type]
    with pytest.raises(NotImplementedError, match=rf"^{name}\(\) is not available$"):
        getattr(wrapper, name)()


@pytest.mark.parametrize(
    ("timeout", "timestep", "steps"), [(1, 0.01, 100), (0.3, 0.1, 3), (0, 0.01, 0), (0.5, 0.02, 25)]
)
def test_step_budget(timeout, timestep, steps):
    assert max_timesteps(timeout, timestep) == steps


def test_normal_call_advances_one_timestep_and_returns_the_client_result(make_wrapper):
    wrapper, spy = make_wrapper()
    assert (wrapper.sim_id, wrapper.max_timesteps, wrapper.simulation_time) == ("7", 100, 0.0)
    result = wrapper.run_loop()
    assert spy.calls == [(1, None)]
    done, trajectory = result
    assert done is False and list(trajectory) == []
    assert wrapper.simulation_time == pytest.approx(0.01)
    assert wrapper.simulation_time_remaining == pytest.approx(0.99)
    assert wrapper.real_time > 0 and not wrapper.is_running
    assert spy.simulation_time_ns == 10_000_000
    assert wrapper.current_state() == "Initialized" or wrapper.current_state()


def test_json_data_is_passed_unchanged(make_wrapper):
    wrapper, spy = make_wrapper()
    data = {"python_1": {"actions": {"speed": 3}}}
    wrapper.run_loop(2, data)
    assert spy.calls == [(2, data)]
    assert spy.calls[0][1] is data


def test_over_budget_raises_without_stepping(make_wrapper):
    wrapper, spy = make_wrapper()
    for _ in range(3):
        wrapper.run_loop(30)
    with pytest.raises(
        NRPSimulationTimeout, match="The number of iteration requested will exceed the timeout"
    ):
        wrapper.run_loop(30)
    assert wrapper.steps == 90 and len(spy.calls) == 3
    assert spy.simulation_time_ns == 900_000_000
    wrapper.run_loop(10)
    with pytest.raises(NRPSimulationTimeout):
        wrapper.run_loop()


def test_zero_timeout_allows_no_step(make_wrapper, experiment):
    set_timeout(experiment, 0)
    wrapper, spy = make_wrapper()
    with pytest.raises(NRPSimulationTimeout):
        wrapper.run_loop()
    assert spy.calls == []


def test_delegate_exception_leaves_counters_consistent(make_wrapper, experiment):
    wrapper, _ = make_wrapper(add_failing_function(experiment))
    with pytest.raises(NrpCoreRunError) as caught:
        wrapper.run_loop(20)
    assert isinstance(caught.value, RuntimeError)
    assert caught.value.detail.startswith("tf_fail (tf_fail.py:")
    assert not wrapper.is_running
    assert wrapper.real_time > 0
    assert wrapper.steps == 0


def _run_in_thread(target: Any) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - recorded for the test
            raised.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, raised


def _paused_control() -> SimulationControl:
    """A control that is not started (paused) and tells when ``run_loop`` waits at the pause point."""
    control = SimulationControl()
    control.started = WatchedEvent()
    return control


def test_stop_while_paused_raises_stop_execution(make_wrapper):
    # how fast the stop ends the call is measured by benchmarks/bench_loop.py
    control = _paused_control()
    wrapper, spy = make_wrapper(control=control)
    thread, raised = _run_in_thread(wrapper.run_loop)
    wait_event(control.started.waiting, message="run_loop to wait at the pause point")
    assert thread.is_alive() and spy.calls == []
    control.request_stop()
    join(thread)
    assert len(raised) == 1 and isinstance(raised[0], NRPStopExecution)
    assert not isinstance(raised[0], Exception)
    assert spy.calls == []


def test_pause_blocks_until_resumed(make_wrapper):
    control = _paused_control()
    wrapper, spy = make_wrapper(control=control)
    thread, raised = _run_in_thread(lambda: wrapper.run_loop(2))
    wait_event(control.started.waiting, message="run_loop to wait at the pause point")
    assert thread.is_alive() and spy.calls == []
    control.start()
    join(thread)
    assert raised == [] and wrapper.steps == 2


def test_stop_during_a_long_run_loop_ends_it(make_wrapper, experiment):
    # how fast the stop ends the call is measured by benchmarks/bench_loop.py
    set_timeout(experiment, 100000)
    control = SimulationControl()
    control.start()
    wrapper, spy = make_wrapper(control=control)
    thread, raised = _run_in_thread(lambda: wrapper.run_loop(10_000_000))
    wait_until(lambda: spy.simulation_time_ns > 0, message="the first step of the long run_loop")
    assert wrapper.is_running, (raised, spy.simulation_time_ns)
    control.request_stop()

    def ended() -> bool:
        wrapper.interrupt()  # as the Simulation Server does: ends the delegated call after a step
        return not thread.is_alive()

    wait_until(ended, message="the run_loop thread to end")
    assert len(raised) == 1 and isinstance(raised[0], NRPStopExecution)
    assert 0 < wrapper.steps < 10_000_000, (wrapper.steps, raised)
    assert wrapper.steps == spy.simulation_time_ns // 10_000_000, (wrapper.steps, spy.simulation_time_ns)
    assert not wrapper.is_running


def test_run_loop_of_fewer_than_one_step_is_refused(make_wrapper):
    # nrp-core's run_loop(0) runs until stopped: it would escape the step budget
    wrapper, spy = make_wrapper()
    outcome: list[str] = []

    def call(n: int) -> None:
        try:
            wrapper.run_loop(n)
            outcome.append("returned")
        except ValueError:
            outcome.append("ValueError")

    for n in (0, -5):
        thread = threading.Thread(target=call, args=(n,))
        thread.start()
        thread.join(HANG)  # refused at once; a run would go on until stopped
        if thread.is_alive():
            spy._client.stop()
            thread.join(HANG)
            pytest.fail(f"run_loop({n}) ran past the step budget")
    assert outcome == ["ValueError", "ValueError"]
    assert spy.calls == [] and wrapper.steps == 0
    for _ in range(wrapper.max_timesteps):
        wrapper.run_loop()
    with pytest.raises(NRPSimulationTimeout):
        wrapper.run_loop()
