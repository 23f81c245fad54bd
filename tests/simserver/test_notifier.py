"""The MQTT notifier against a real broker: topics, status payloads, task progress, runtime errors."""

from __future__ import annotations

import pytest

from hbp_nrp_simserver.errors import ErrorType, ScriptError
from hbp_nrp_simserver.notifier import SHUTDOWN_TASK, STATUS_PERIOD, MQTTNotifier, status_payload

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


def test_status_timer_publishes_the_current_status_again_and_again(notifier, recorder, prefix):
    assert STATUS_PERIOD == 1.0  # by default, once a second
    notifier.start_status_timer(period=0.05)
    status = topic(prefix, "status")
    recorder.wait_for(status, lambda p: p.get("state") == "created")
    notifier.state["value"] = "paused"
    # nothing but the timer publishes here: a paused status proves it published again
    recorder.wait_for(status, lambda p: p.get("state") == "paused")
    notifier.stop_status_timer()


def test_messages_are_not_retained(notifier, recorder, mqtt_broker, prefix):
    status, runtime_error = topic(prefix, "status"), topic(prefix, "runtime_error")
    notifier.publish_status()
    notifier.publish_error(ScriptError("boom", ErrorType.RUNTIME))
    # once an earlier subscriber got both, the broker has them (and would have retained them)
    recorder.wait_for(status, lambda p: "state" in p)
    recorder.wait_for(runtime_error, lambda p: p["msg"] == "boom")
    late = Recorder(mqtt_broker.settings(prefix))
    try:
        # a retained message reaches a new subscriber before anything published after it subscribed
        notifier.publish_status({"progress": {"task": "sync", "done": True}})
        notifier.publish_error(ScriptError("sync", ErrorType.RUNTIME))
        late.wait_for(status, lambda p: "progress" in p)
        late.wait_for(runtime_error, lambda p: p["msg"] == "sync")
        assert late.payloads(status) == [{"progress": {"task": "sync", "done": True}}]
        assert [p["msg"] for p in late.payloads(runtime_error)] == ["sync"]
    finally:
        late.close()
