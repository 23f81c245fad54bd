"""The in-process client ``NrpCore`` (its state machine, runs, datapacks, stop and shutdown from
other threads) against real engine processes.

Most tests re-express nrp-core's client suite on our ``status_function_test`` folder; the others
drive ``tf_exchange`` through the client and check the state machine, ``stop()`` and the logs.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import nrp_core
from nrp_core.client import NrpCore, NrpCoreStateError
from tests.helpers.waiting import HANG, ContendedLock, join, wait_event, wait_until
from tests.nrp_core.loop_helpers import STATUS_FUNCTION_TEST, TF_EXCHANGE, process_gone


def _client(config: str = "simulation_config.json", **kwargs) -> NrpCore:
    kwargs.setdefault("log_output", None)
    return NrpCore(
        "localhost:50051", experiment_folder=str(STATUS_FUNCTION_TEST), config_file=config, **kwargs
    )


@pytest.fixture
def client() -> Iterator[NrpCore]:
    created = _client()
    yield created
    if created.current_state() != "Created":
        created.shutdown()


def test_client_is_exported_from_the_package() -> None:
    assert nrp_core.NrpCore is NrpCore
    assert issubclass(NrpCoreStateError, ConnectionError)


def test_basic_state_sequence(client: NrpCore) -> None:
    assert client.current_state() == "Created"
    client.initialize()
    assert client.current_state() == "Initialized"
    assert client.run_loop(4) == (False, [])
    assert client.current_state() == "Stopped"
    client.reset()
    assert client.current_state() == "Initialized"
    done, timed_out, _trajectory = client.run_until_timeout()
    assert (done, timed_out) == (False, True)
    assert client.current_state() == "Stopped"
    client.shutdown()
    assert client.current_state() == "Created"


def test_constructor_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        NrpCore("localhost:50051", experiment_folder=str(STATUS_FUNCTION_TEST), config_file="missing.json")
    with pytest.raises(FileNotFoundError):
        NrpCore("localhost:50051", config_file=str(tmp_path / "nothing" / "simulation_config.json"))


def test_initialize_returns_the_requested_datapacks(client: NrpCore) -> None:
    trajectory = client.initialize()
    assert trajectory == [{"test_data": 0, "time": 0, "timestep": 0}, {"time": 0, "timestep": 0}]


def test_reset_sends_client_datapacks_and_returns_fresh_ones(client: NrpCore) -> None:
    client.initialize()
    client.run_loop(2)
    client.set_json_datapack("actions", "python_1", {"test_reset": 987})
    assert len(client._json_datapack_out_buffer) == 1
    trajectory = client.reset()
    assert client._json_datapack_out_buffer == []
    assert len(trajectory) == 2
    assert all(item["time"] == 20_000_000 for item in trajectory)
    assert [item.get("action") for item in trajectory] == [987, None]
    assert client.simulation_time_ns == 0


def test_done_flag_follows_is_updated() -> None:
    client = _client("simulation_config_done_flag.json")
    client.initialize()
    try:
        assert client.run_loop(1) == (True, [])
        assert client.run_loop(1) == (False, [])
        assert client.run_loop(2)[0] is False, "the last batch of the two (t = 30 ms) has no python_2"
        assert client.run_loop(1)[0] is True
    finally:
        client.shutdown()


def test_set_json_datapack_is_buffered_until_run_loop_or_reset(client: NrpCore) -> None:
    client.initialize()
    client.set_json_datapack("actions", "python_1", {"test_data": 888})
    assert len(client._json_datapack_out_buffer) == 1
    client.run_loop(1)
    assert len(client._json_datapack_out_buffer) == 0
    client.set_json_datapack("actions", "python_1", {"test_data": 888})
    client.set_json_datapack("whatever", "no_such_engine", {"x": 1})  # accepted, with a warning
    assert len(client._json_datapack_out_buffer) == 2
    client.reset()
    assert len(client._json_datapack_out_buffer) == 0
    with pytest.raises(TypeError):
        client.set_json_datapack("actions", "python_1", {"bad": object()})


def test_loopback_json_datapacks() -> None:
    client = _client("simulation_config_loopback.json")
    client.set_json_datapack("actions", "python_1", {"test_data": 888})
    client.initialize()
    try:
        assert client.run_loop(1) == (True, [{"test_data": 0}])
        assert client.run_loop(1) == (True, [{"test_data": 888}])
        # json_data is buffered exactly like set_json_datapack.
        client.run_loop(1, {"python_1": {"actions": {"test_data": 5}}})
        assert client.run_loop(1) == (True, [{"test_data": 5}])
    finally:
        client.shutdown()


def test_json_data_must_be_a_mapping_of_mappings(client: NrpCore) -> None:
    client.initialize()
    with pytest.raises(TypeError, match="json_data must be a mapping"):
        client.run_loop(1, True)
    with pytest.raises(TypeError):
        client.run_loop(1, {"python_1": [1, 2]})
    assert client.current_state() == "Initialized"


def test_trajectory_json() -> None:
    client = _client("simulation_config_trajectory_json.json")
    client.initialize()
    try:
        done, timed_out, trajectory = client.run_until_timeout()
    finally:
        client.shutdown()
    assert (done, timed_out) == (True, False)
    assert trajectory == [{"iteration": i} for i in range(4)]


def test_trajectory_until_timeout() -> None:
    client = _client("simulation_config_trajectory_timeout.json")
    client.initialize()
    try:
        done, timed_out, trajectory = client.run_until_timeout()
        assert client.simulation_time_ns == 1_000_000_000
    finally:
        client.shutdown()
    assert (done, timed_out) == (False, True)
    assert trajectory == [{"iteration": i} for i in range(4)]


# -- illegal calls ----------------------------------------------------------------------------------


def test_run_loop_before_initialize(client: NrpCore) -> None:
    with pytest.raises(NrpCoreStateError, match=r"run_loop\(\) is not allowed in state 'Created'"):
        client.run_loop(1)
    with pytest.raises(NrpCoreStateError):
        client.run_until_timeout()
    with pytest.raises(NrpCoreStateError):
        client.reset()


def test_shutdown_before_initialize(client: NrpCore) -> None:
    with pytest.raises(NrpCoreStateError):
        client.shutdown()


def test_double_initialize(client: NrpCore) -> None:
    client.initialize()
    with pytest.raises(NrpCoreStateError, match="already initialized"):
        client.initialize()
    assert client.current_state() == "Initialized"


def test_initialize_again_after_shutdown(client: NrpCore) -> None:
    client.initialize()
    client.run_loop(3)
    client.shutdown()
    assert client.initialize() == [{"test_data": 0, "time": 0, "timestep": 0}, {"time": 0, "timestep": 0}]
    assert client.simulation_time_ns == 0


# -- stop() and threads ---------------------------------------------------------------------------------


def test_stop_from_another_thread_ends_run_loop(client: NrpCore) -> None:
    client.initialize()

    def stop_once_running() -> None:
        wait_until(lambda: client.simulation_time_ns > 0, message="the loop to step")
        client.stop()

    stopper = threading.Thread(target=stop_once_running)
    stopper.start()
    done, trajectory = client.run_loop(0)  # 0 = until stop()
    join(stopper)
    assert (done, trajectory) == (False, [])
    assert client.current_state() == "Stopped"
    assert client.simulation_time_ns > 0
    assert client.simulation_time_ns % 10_000_000 == 0, "the loop stops between steps"
    client.run_loop(1)  # a stop does not stick to the next call


def test_run_async_and_simulation_time_from_another_thread(client: NrpCore) -> None:
    client.initialize()
    response: list = []
    thread = client.run_loop(0, run_async=True, response=response)
    assert isinstance(thread, threading.Thread)
    seen: list[int] = []

    def five_times_seen() -> bool:
        seen.append(client.simulation_time_ns)
        return len(set(seen)) >= 5

    wait_until(five_times_seen, message="five different simulation times")
    assert client.current_state() == "Running"
    with pytest.raises(NrpCoreStateError, match="a loop is running"):
        client.run_loop(1)
    client.stop()
    join(thread)
    assert response == [(False, [])]
    assert seen == sorted(seen) and len(set(seen)) >= 5
    assert client.current_state() == "Stopped"


# -- tf_exchange through the client ------------------------------------------------------------------


def _lines(path: Path, prefix: str) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith(prefix)]


def test_tf_exchange_through_the_client_with_reset(tmp_path: Path) -> None:
    experiment = tmp_path / "tf_exchange"
    shutil.copytree(TF_EXCHANGE, experiment)
    (experiment / "logs").mkdir()
    client = NrpCore("localhost:5345", experiment_folder=str(experiment))  # default log_output
    log = experiment / "logs" / ".console_output.log"
    client.initialize()
    assert client.run_loop(10) == (False, [])
    assert client.current_state() == "Stopped"
    assert len(_lines(log, "DataPack 1 data is")) == 10
    received = _lines(log, "Engine 2 received data is")
    assert received[0] == "Engine 2 received data is {'time': 0, 'timestep': 0}"
    assert received[-1] == "Engine 2 received data is {'time': 90000000, 'timestep': 10000000}"
    client.reset()
    assert client.current_state() == "Initialized"
    assert client.run_until_timeout()[:2] == (False, True)
    assert client.simulation_time_ns == 1_000_000_000
    client.shutdown()
    assert client.current_state() == "Created"
    text = log.read_text()
    assert len(_lines(log, "DataPack 1 data is")) == 110
    received = _lines(log, "Engine 2 received data is")
    assert len(received) == 110
    assert received[10] == "Engine 2 received data is {'time': 0, 'timestep': 0}", "first step after reset"
    assert received[-1] == "Engine 2 received data is {'time': 990000000, 'timestep': 10000000}"
    assert text.count("Engine 1 is resetting") == 1
    assert text.count("Engine 1 is shutting down") == 1 and text.count("Engine 2 is shutting down") == 1
    assert not (experiment / ".console_output.log").exists(), "logs/ exists, so the log goes there"


def test_client_overrides_in_args(tmp_path: Path) -> None:
    experiment = tmp_path / "tf_exchange"
    shutil.copytree(TF_EXCHANGE, experiment)
    client = NrpCore(
        "localhost:5345",
        experiment_folder=str(experiment),
        args="-o SimulationTimeout=0.05 --cloglevel=info",
        log_output="run.log",
    )
    client.initialize()
    client.run_until_timeout()
    client.shutdown()
    assert client.simulation_time_ns == 0  # no loop after shutdown
    assert len(_lines(experiment / "run.log", "DataPack 1 data is")) == 5


def test_shutdown_while_running_stops_the_loop_first(client: NrpCore) -> None:
    client.initialize()
    response: list = []
    thread = client.run_loop(0, run_async=True, response=response)
    wait_until(lambda: client.simulation_time_ns >= 50_000_000, message="five steps")
    pids = [engine.pid for engine in client._loop.engines]
    client.shutdown()
    join(thread)
    assert response == [(False, [])]
    assert client.current_state() == "Created"
    assert all(process_gone(pid) for pid in pids)


def test_invalid_args_raise_in_the_constructor() -> None:
    with pytest.raises(ValueError, match="invalid choice"):
        _client(args="--cloglevel=loud")
    with pytest.raises(ValueError, match="expected one argument"):
        _client(args="-o")


@pytest.mark.parametrize("call", ["run_loop", "run_until_timeout"])
def test_stop_and_shutdown_reach_a_run_still_waiting_for_the_lock(call: str) -> None:
    # Another thread may call stop() or shutdown() after run_loop() was called but before the run
    # holds the lock or is in state Running; neither may be lost (the run would never end).
    # ContendedLock tells when each thread waits for the lock the test holds.
    client = _client("simulation_config_trajectory_timeout.json", overrides=["SimulationTimeout=1000000"])
    client.initialize()
    try:
        for end in (client.stop, client.shutdown):
            if client.current_state() == "Created":
                client.initialize()
            response: list = []
            lock = client._lock = ContendedLock(client._lock)
            with lock:
                if call == "run_loop":
                    thread = client.run_loop(0, run_async=True, response=response)
                else:
                    thread = client.run_until_timeout(run_async=True, response=response)
                wait_event(lock.contended, message="the run thread to wait for the lock")
                ender = threading.Thread(target=end)
                ender.start()
                # stop() returns at once; shutdown() waits for the lock too
                wait_until(lambda: not ender.is_alive() or lock.contentions >= 2, message=f"{end.__name__}()")  # noqa: B023
            client._lock = lock.inner
            thread.join(HANG)
            ender.join(HANG)
            alive = thread.is_alive() or ender.is_alive()
            if alive:
                client.stop()
                thread.join(HANG)
            assert not alive, f"{end.__name__}() did not end a waiting {call}()"
            assert response
            if end.__name__ == "shutdown" and isinstance(response[0], NrpCoreStateError):
                # the lock went to shutdown() first (the order of two waiters is the system's
                # choice): the run then found the client shut down and ended at once
                assert "not allowed in state 'Created'" in str(response[0])
            else:
                assert not isinstance(response[0], BaseException), response[0]
    finally:
        if client.current_state() != "Created":
            client.shutdown()
