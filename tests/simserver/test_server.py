"""The Simulation Server as a real process against a real broker: lifecycle messages in, status and
runtime errors out, exit codes, and exit when its parent (the REST server) dies."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hbp_nrp_commons.mqtt import MqttConnection, client_id
from tests.helpers.waiting import HANG

from .helpers import Recorder, line_of, set_timeout, wait_until

_ids = itertools.count(random.randrange(1000, 100000, 100))

INIT = {
    "source_node": "nrp_backend",
    "source_state": "created",
    "event": "initialized",
    "target_state": "paused",
}
START = {
    "source_node": "nrp_backend",
    "source_state": "paused",
    "event": "started",
    "target_state": "started",
}
PAUSE = {"source_node": "nrp_backend", "source_state": "started", "event": "paused", "target_state": "paused"}


class Simulation:
    """One simserver process plus the MQTT side of a stand-in backend."""

    def __init__(
        self, directory: Path, broker, script: str = "main_script.py", config="simulation_config.json"
    ):
        self.id = str(next(_ids))
        self.directory = directory
        self.settings = broker.settings("")
        self.base = f"nrp_simulation/{self.id}"
        self.recorder = Recorder(self.settings, f"{self.base}/#")
        self.backend = MqttConnection(self.settings, client_id("test_backend", self.id))
        self.backend.connect(HANG)
        self.script = script
        self.config = config
        self.proc: subprocess.Popen | None = None
        self.log = directory / f"simulation_{self.id}.log"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "hbp_nrp_simserver",
            "--dir", str(self.directory), "--id", self.id,
            "--script", self.script, "--config", self.config,
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["NRP_MQTT_BROKER_ADDRESS"] = f"{self.settings.host}:{self.settings.port}"
        env["NRP_MQTT_PREFIX"] = ""
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def spawn(self) -> subprocess.Popen:
        with open(self.log, "x") as out:
            self.proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True
            )
        return self.proc

    def send(self, message: dict, retain: bool = False) -> None:
        self.backend.publish(f"{self.base}/lifecycle", message, qos=1, retain=retain, wait=True)

    def topic(self, leaf: str) -> str:
        return f"{self.base}/{leaf}"

    def wait_status(self, state: str, timeout: float = HANG) -> dict:
        return self.recorder.wait_for(self.topic("status"), lambda p: p.get("state") == state, timeout)

    def wait_advanced(self, state: str) -> dict:
        """Wait for a status in ``state`` after at least one step."""
        return self.recorder.wait_for(
            self.topic("status"), lambda p: p.get("state") == state and p["simulationTime"] > 0
        )

    def wait_exit(self, timeout: float = HANG) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.backend.clear_retained(f"{self.base}/lifecycle")
        self.backend.close()
        self.recorder.close()


@pytest.fixture
def simulation(experiment, mqtt_broker):
    sims: list[Simulation] = []

    def build(**kwargs) -> Simulation:
        sim = Simulation(experiment, mqtt_broker, **kwargs)
        sims.append(sim)
        return sim

    yield build
    for sim in sims:
        sim.close()


def test_normal_run_init_start_complete_and_sigterm(simulation, experiment):
    sim = simulation()
    sim.send(INIT, retain=True)  # the backend publishes the retained init message before the spawn
    sim.spawn()
    ready = sim.wait_status("paused")
    assert set(ready) == {"realTime", "simulationTime", "state", "simulationTimeLeft"}
    assert ready["simulationTime"] == 0.0 and ready["simulationTimeLeft"] == pytest.approx(1.0)
    # the consumed init message is cleared (empty retained payload)
    wait_until(lambda: None in sim.recorder.payloads(sim.topic("lifecycle")), message="the cleared init")
    states = [p["state"] for p in sim.recorder.payloads(sim.topic("status")) if "state" in p]
    first_paused = states.index("paused")
    assert first_paused > 0 and set(states[:first_paused]) == {"created"}
    assert "created" not in states[first_paused:]

    sim.send(START)
    completed = sim.recorder.wait_for(sim.topic("lifecycle"), lambda p: p.get("event") == "completed")
    assert completed == {
        "source_node": "nrp_simulation_server",
        "source_state": "started",
        "event": "completed",
        "target_state": "completed",
    }
    final = sim.wait_status("completed")
    assert final["simulationTime"] == pytest.approx(1.0)
    assert final["simulationTimeLeft"] == pytest.approx(0.0)
    assert final["realTime"] > 0
    assert sim.recorder.payloads(sim.topic("runtime_error")) == []

    sim.proc.send_signal(signal.SIGTERM)  # how fast it exits is measured by benchmarks/bench_backend.py
    assert sim.wait_exit() == 0
    status = sim.topic("status")
    sim.recorder.wait_for(status, lambda p: p.get("progress", {}).get("done") is True)
    stopped = sim.wait_status("stopped")
    assert stopped["simulationTime"] == pytest.approx(1.0)  # counters keep their last values
    progress = [p["progress"] for p in sim.recorder.payloads(status) if "progress" in p]
    assert progress == [
        {
            "task": "Shutting down Simulation",
            "subtask": "",
            "number_of_subtasks": 0,
            "subtask_index": 0,
            "block_ui": True,
        },
        {"task": "Shutting down Simulation", "done": True},
    ]
    # the simserver never publishes stopped on the lifecycle topic
    events = [p["event"] for p in sim.recorder.payloads(sim.topic("lifecycle")) if p]
    assert events == ["initialized", "started", "completed"]
    log = sim.text()
    assert "Received '15'" in log
    script_log = (experiment / f"main_script_{sim.id}.log").read_text().splitlines()
    assert script_log[0] == f"Writing logs to 'main_script_{sim.id}.log'"
    assert (experiment / ".console_output.log").exists()


def test_pause_and_resume(simulation, experiment):
    set_timeout(experiment, 1000)
    sim = simulation()
    sim.spawn()
    sim.wait_status("created")
    sim.send(INIT, retain=True)
    sim.wait_status("paused")
    sim.send(START)
    sim.wait_advanced("started")
    sim.send(PAUSE)
    sim.wait_advanced("paused")

    def paused_statuses() -> list[dict]:
        return [p for p in sim.recorder.payloads(sim.topic("status")) if p.get("state") == "paused"]

    before = paused_statuses()
    # the 1 s timer keeps publishing while paused
    wait_until(lambda: len(paused_statuses()) > len(before), message="another paused status")
    after = paused_statuses()
    # at most the one step in flight when the pause arrived; a paused second adds nothing
    assert after[-1]["simulationTime"] == pytest.approx(before[-1]["simulationTime"], abs=0.011)
    assert after[-1]["realTime"] == pytest.approx(before[-1]["realTime"], abs=0.5)
    sim.send(START | {"source_state": "paused"})
    sim.wait_status("started")
    sim.proc.send_signal(signal.SIGTERM)
    assert sim.wait_exit() == 0


def test_script_that_ends_while_paused_completes_on_resume(simulation, experiment):
    gate = experiment / "gate"
    (experiment / "main_script.py").write_text(
        "import pathlib, time\n"
        "nrp.run_loop(1)\n"
        f"while not pathlib.Path({str(gate)!r}).exists():\n"
        "    time.sleep(0.01)\n"
    )
    sim = simulation()
    sim.send(INIT, retain=True)
    sim.spawn()
    sim.wait_status("paused")
    sim.send(START)
    sim.wait_advanced("started")
    sim.send(PAUSE)
    sim.wait_advanced("paused")
    gate.touch()  # the script ends while paused
    wait_until(lambda: "The main script ended while paused" in sim.text(), message="the script's end")
    assert [p["event"] for p in sim.recorder.payloads(sim.topic("lifecycle")) if p][-1] == "paused"
    sim.send(START)
    completed = sim.recorder.wait_for(sim.topic("lifecycle"), lambda p: p.get("event") == "completed")
    assert completed["source_state"] == "started"
    final = sim.wait_status("completed")
    assert final["simulationTime"] == pytest.approx(0.01)  # not run a second time
    sim.proc.send_signal(signal.SIGTERM)
    assert sim.wait_exit() == 0


def test_pause_or_resume_crossing_completed_is_ignored(simulation, experiment):
    # the backend paused (then resumed) before the simserver's ``completed`` reached it
    (experiment / "main_script.py").write_text("nrp.run_loop(1)\nfile_logger.info('script end')\n")
    sim = simulation()
    sim.send(INIT, retain=True)
    sim.spawn()
    sim.wait_status("paused")
    sim.send(START)
    sim.recorder.wait_for(sim.topic("lifecycle"), lambda p: p.get("event") == "completed")
    sim.send(PAUSE)
    sim.send(START | {"source_state": "paused"})
    wait_until(lambda: sim.text().count("the script has completed") == 2, message="both commands ignored")
    after = [p for p in sim.recorder.payloads(sim.topic("status")) if "state" in p]
    assert after[-1]["state"] == "completed"
    assert after[-1]["simulationTime"] == pytest.approx(0.01)
    assert "paused" not in [p["state"] for p in after[after.index(sim.wait_status("completed")) :]]
    assert (experiment / f"main_script_{sim.id}.log").read_text().count("script end") == 1
    sim.proc.send_signal(signal.SIGTERM)
    assert sim.wait_exit() == 0


def test_sigterm_during_a_long_run_loop_exits_cleanly(simulation, experiment):
    set_timeout(experiment, 1000)
    (experiment / "main_script.py").write_text("while True:\n    nrp.run_loop(10000)\n")
    sim = simulation()
    sim.send(INIT, retain=True)
    sim.spawn()
    sim.wait_status("paused")
    sim.send(START)
    # real time counts the run_loop call in progress
    sim.recorder.wait_for(sim.topic("status"), lambda p: p.get("state") == "started" and p["realTime"] > 0)
    sim.proc.send_signal(signal.SIGTERM)
    assert sim.wait_exit() == 0
    assert sim.recorder.payloads(sim.topic("runtime_error")) == []


def test_script_error_is_reported_then_completed(simulation, experiment):
    script = textwrap.dedent(
        """
        nrp.run_loop(5)
        data = {"key": 1}
        value = data["missing"]
        """
    ).lstrip()
    (experiment / "main_script.py").write_text(script)
    sim = simulation()
    sim.send(INIT, retain=True)
    sim.spawn()
    sim.wait_status("paused")
    sim.send(START)
    error = sim.recorder.wait_for(sim.topic("runtime_error"), lambda p: True)
    assert error == {
        "sim_id": sim.id,
        "msg": "'missing'",
        "error_type": "Runtime",
        "fileName": "main_script.py",
        "line_number": line_of(script, '["missing"]'),
        "offset": 9,
        "line_text": 'value = data["missing"]',
    }
    sim.recorder.wait_for(sim.topic("lifecycle"), lambda p: p.get("event") == "completed")
    sim.wait_status("completed")
    sim.proc.send_signal(signal.SIGTERM)
    assert sim.wait_exit() == 0


def test_syntax_error_fails_the_lifecycle_and_exits_3(simulation, experiment):
    (experiment / "main_script.py").write_text("nrp.run_loop(1)\nwhile True\n    pass\n")
    sim = simulation()
    sim.send(INIT, retain=True)
    sim.spawn()
    failed = sim.recorder.wait_for(sim.topic("lifecycle"), lambda p: p.get("event") == "failed")
    assert failed == {
        "source_node": "nrp_simulation_server",
        "source_state": "paused",
        "event": "failed",
        "target_state": "failed",
    }
    error = sim.recorder.wait_for(sim.topic("runtime_error"), lambda p: True)
    assert error["error_type"] == "Compile"
    assert error["msg"].startswith("SyntaxError in (Line 2): ")
    assert (error["line_number"], error["line_text"]) == (2, "while True")
    assert sim.wait_exit() == 3
    sim.wait_status("failed")


def test_invalid_configuration_exits_1_with_loading_error(simulation, experiment):
    (experiment / "broken_config.json").write_text('{"SimulationTimeout": 1,')
    sim = simulation(config="broken_config.json")
    sim.spawn()
    error = sim.recorder.wait_for(sim.topic("runtime_error"), lambda p: True)
    assert error["error_type"] == "Loading"
    assert error["msg"].startswith("Could not parse experiment configuration broken_config.json: ")
    assert sim.wait_exit() == 1


def test_unreachable_broker_exits_1(experiment, mqtt_broker):
    from tests.helpers.processes import free_port

    env = dict(os.environ, NRP_MQTT_BROKER_ADDRESS=f"127.0.0.1:{free_port()}")
    proc = subprocess.run(
        [sys.executable, "-m", "hbp_nrp_simserver", "-d", str(experiment), "-i", "5", "-s", "main_script.py",
         "-c", "simulation_config.json", "--nrp-address", "localhost:5345"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Initialization of the Simulation Server failed" in proc.stdout


def test_bad_command_line_exits_2():
    proc = subprocess.run(
        [sys.executable, "-m", "hbp_nrp_simserver", "--dir", "."], capture_output=True, timeout=30
    )
    assert proc.returncode == 2


def _is_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_parent_death_makes_the_simserver_exit(simulation, experiment):
    sim = simulation()
    sim.send(INIT, retain=True)
    launcher = textwrap.dedent(
        f"""
        import subprocess, sys, time
        with open({str(sim.log)!r}, "x") as out:
            proc = subprocess.Popen({sim.command()!r}, stdout=out, stderr=subprocess.STDOUT)
        print(proc.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True, env=sim.env()
    )
    try:
        child = int(parent.stdout.readline())
        sim.wait_status("paused")
        parent.kill()
        parent.wait(HANG)
        wait_until(lambda: _is_gone(child), message="the orphaned simserver to exit")
        assert "Backend gone" in sim.text()
        sim.wait_status("stopped")
    finally:
        if parent.poll() is None:
            parent.kill()
        if not _is_gone(child):
            os.kill(child, signal.SIGKILL)


def test_broker_restart_status_again_and_commands_still_work(simulation, mqtt_broker):
    sim = simulation()
    sim.send(INIT, retain=True)
    sim.spawn()
    sim.wait_status("paused")
    mqtt_broker.restart()
    count = len(sim.recorder.payloads(sim.topic("status")))
    # the recorder and the simserver reconnect on their own; the simserver publishes statuses again
    wait_until(lambda: len(sim.recorder.payloads(sim.topic("status"))) > count, message="a status")
    sim.send(START)
    sim.recorder.wait_for(sim.topic("lifecycle"), lambda p: p.get("event") == "completed")
    sim.proc.send_signal(signal.SIGTERM)
    assert sim.wait_exit() == 0


def test_shutdown_waits_for_a_final_state_reached_in_another_thread(experiment, mqtt_broker, monkeypatch):
    # a remote ``failed`` while started: the lifecycle topic's worker stops the script and shuts
    # nrp-core down; the process must not exit before that has finished
    from hbp_nrp_simserver.server import SimulationServer

    from .helpers import make_client

    class InProcessServer(SimulationServer):
        def create_client(self):
            return make_client(self.sim_dir)

    monkeypatch.chdir(experiment)  # the simserver runs in the simulation directory
    set_timeout(experiment, 1000)
    (experiment / "main_script.py").write_text(
        "import time\n"
        "try:\n"
        "    while True:\n"
        "        nrp.run_loop(1)\n"
        "except NRPStopExecution:\n"
        "    time.sleep(1)\n"
        "    raise\n"
    )
    sim_id = str(next(_ids))
    settings = mqtt_broker.settings("")
    topic = f"nrp_simulation/{sim_id}/lifecycle"
    backend = MqttConnection(settings, client_id("test_backend", sim_id))
    backend.connect(HANG)
    server = InProcessServer(experiment, sim_id, "main_script.py", "simulation_config.json", settings)
    try:
        server.initialize()
        backend.publish(topic, INIT, qos=1, retain=True, wait=True)
        wait_until(lambda: server.state == "paused", message="paused")
        backend.publish(topic, START, qos=1, wait=True)
        wait_until(lambda: server.state == "started", message="started")
        wait_until(lambda: server.runner.wrapper.steps > 0, message="the script to run a step")
        backend.publish(topic, START | {"event": "failed", "target_state": "failed"}, qos=1, wait=True)
        wait_until(lambda: server.state == "failed", interval=0.005, message="failed")
        server.shutdown()
        assert server.done_event.is_set()
        assert server.exit_state == "failed"
    finally:
        server.shutdown()
        backend.clear_retained(topic)
        backend.close()
