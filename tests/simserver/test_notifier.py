"""The MQTT notifier against a real broker: topics, status payloads, task progress, errors (5.5-5.7)."""

from __future__ import annotations

import time

import pytest

from hbp_nrp_simserver.errors import ErrorType, ScriptError
from hbp_nrp_simserver.notifier import SHUTDOWN_TASK, MQTTNotifier, status_payload

from .helpers import Recorder


@pytest.fixture(params=["", "pfx"], ids=["no-prefix", "prefix"])
def prefix(request):
    return request.param


@pytest.fixture
def recorder(mqtt_broker, prefix):
    rec = Recorder(mqtt_broker.settings(prefix))
    yield rec
    rec.close()


@pytest.fixture
def notifier(mqtt_broker, prefix):
    state = {"value": "created"}
    notifier = MQTTNotifier(
        mqtt_broker.settings(prefix),
        "3",
        status_source=lambda: status_payload(state["value"], 0.5, 0.25, 0.75),
    )
    notifier.state = state  # type: ignore[attr-defined]
    notifier.connect()
    yield notifier
    notifier.shutdown()


def topic(prefix: str, leaf: str) -> str:
    return f"{prefix}/nrp_simulation/3/{leaf}" if prefix else f"nrp_simulation/3/{leaf}"


def test_status_goes_to_the_status_topic(notifier, recorder, prefix):
    notifier.publish_status()
    status = recorder.wait_for(topic(prefix, "status"), lambda p: "state" in p)
    assert status == {"realTime": 0.5, "simulationTime": 0.25, "state": "created", "simulationTimeLeft": 0.75}
    assert all(isinstance(status[k], float) for k in ("realTime", "simulationTime", "simulationTimeLeft"))


def test_errors_go_to_the_runtime_error_topic(notifier, recorder, prefix):
    notifier.publish_error(ScriptError("boom", ErrorType.RUNTIME, "main_script.py", 4, 1, "raise X"))
    error = recorder.wait_for(topic(prefix, "runtime_error"), lambda p: True)
    assert error == {
        "sim_id": "3",
        "msg": "boom",
        "error_type": "Runtime",
        "fileName": "main_script.py",
        "line_number": 4,
        "offset": 1,
        "line_text": "raise X",
    }
    assert recorder.payloads(topic(prefix, "status")) == [] or all(
        "msg" not in p for p in recorder.payloads(topic(prefix, "status"))
    )


def test_task_start_update_finish_publishes_three_messages(notifier, recorder, prefix):
    notifier.start_task("Loading", "engines", 2, block_ui=False)
    notifier.update_task("functions")
    notifier.finish_task()
    status = topic(prefix, "status")
    recorder.wait_for(status, lambda p: p.get("progress", {}).get("done") is True)
    assert [p for p in recorder.payloads(status) if "progress" in p] == [
        {
            "progress": {
                "task": "Loading",
                "subtask": "engines",
                "number_of_subtasks": 2,
                "subtask_index": 0,
                "block_ui": False,
            }
        },
        {
            "progress": {
                "task": "Loading",
                "subtask": "functions",
                "number_of_subtasks": 2,
                "subtask_index": 1,
                "block_ui": False,
            }
        },
        {"progress": {"task": "Loading", "done": True}},
    ]


def test_task_context_manager_is_the_shutdown_task_shape(notifier, recorder, prefix):
    with notifier.task(SHUTDOWN_TASK):
        pass
    status = topic(prefix, "status")
    recorder.wait_for(status, lambda p: p.get("progress", {}).get("done") is True)
    assert [p for p in recorder.payloads(status) if "progress" in p] == [
        {
            "progress": {
                "task": "Shutting down Simulation",
                "subtask": "",
                "number_of_subtasks": 0,
                "subtask_index": 0,
                "block_ui": True,
            }
        },
        {"progress": {"task": "Shutting down Simulation", "done": True}},
    ]


def test_starting_a_task_finishes_the_open_one(notifier, recorder, prefix):
    notifier.start_task("first")
    notifier.start_task("second")
    status = topic(prefix, "status")
    recorder.wait_for(status, lambda p: p.get("progress", {}).get("task") == "second")
    progress = [p["progress"] for p in recorder.payloads(status) if "progress" in p]
    assert [(p["task"], p.get("done", False)) for p in progress] == [
        ("first", False),
        ("first", True),
        ("second", False),
    ]


def test_status_timer_publishes_every_second(notifier, recorder, prefix):
    notifier.start_status_timer(period=1.0)
    status = topic(prefix, "status")
    recorder.wait_for(status, lambda p: "state" in p, timeout=2)
    began = time.monotonic()
    notifier.state["value"] = "paused"
    recorder.wait_for(status, lambda p: p.get("state") == "paused", timeout=3)
    assert 0.5 < time.monotonic() - began < 1.6
    notifier.stop_status_timer()


def test_messages_are_not_retained(notifier, mqtt_broker, prefix):
    notifier.publish_status()
    notifier.publish_error(ScriptError("boom", ErrorType.RUNTIME))
    time.sleep(0.2)
    late = Recorder(mqtt_broker.settings(prefix))
    try:
        time.sleep(0.3)
        assert late.payloads(topic(prefix, "status")) == []
        assert late.payloads(topic(prefix, "runtime_error")) == []
    finally:
        late.close()
