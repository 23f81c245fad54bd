"""Spoofed MQTT messages against a real running simulation, on the embedded broker with a secret.

The REST server and the Simulation Server (real, sandboxed when bwrap is installed) have their own
identities; nobody else (an anonymous client, another simulation) can make the simulation fail.
"""

from __future__ import annotations

import getpass
import glob
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hbp_nrp_commons import mqtt
from hbp_nrp_commons.mqtt_identity import BACKEND_USER, credential, simulation_user
from tests.backend.conftest import BackendFactory, Storage
from tests.helpers.brokers import MosquittoBroker, mosquitto_binary
from tests.helpers.processes import start_server

SECRET = secrets.token_hex(16)
ENDLESS = """
import time
while True:
    nrp.run_loop()
    time.sleep(0.01)
"""


@dataclass
class SecuredBroker:
    host: str
    port: int
    env: dict[str, str]  # what the REST server needs besides the broker address and NRP_MQTT_SECRET


def dynsec_plugin() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so"))
    return found[0] if found and mosquitto_binary() and shutil.which("mosquitto_ctrl") else None


class DynsecMosquitto(MosquittoBroker):
    """mosquitto with the dynamic security plugin, set up as docs/security.md says."""

    def __init__(self, workdir: Path, plugin: str) -> None:
        self.workdir = workdir
        self.plugin = plugin
        super().__init__(workdir)

    def start(self) -> None:
        dynsec = self.workdir / "dynamic-security.json"
        if not dynsec.exists():
            self.admin_password = secrets.token_hex(8)
            self.ctrl("dynsec", "init", str(dynsec), "admin", self.admin_password, connect=False)
        self._config.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
            f"plugin {self.plugin}\nplugin_opt_config_file {dynsec}\n"
            f"user {getpass.getuser()}\n"  # as root it would become user mosquitto, who cannot read the file
        )
        super().start()

    def ctrl(self, *args: str, connect: bool = True) -> None:
        login = ["-h", self.host, "-p", str(self.port), "-u", "admin", "-P", self.admin_password]
        command = ["mosquitto_ctrl", *(login if connect else []), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"


def set_up_dynsec(broker: DynsecMosquitto) -> None:
    """The commands of docs/security.md ("mosquitto"), with this test's secret."""
    backend_password = credential(SECRET, BACKEND_USER)
    for command in (
        "createRole nrp-anonymous",
        "addRoleACL nrp-anonymous subscribePattern # allow",
        "createGroup nrp-anonymous",
        "addGroupRole nrp-anonymous nrp-anonymous",
        "setAnonymousGroup nrp-anonymous",
        "createRole nrp-backend",
        "addRoleACL nrp-backend publishClientSend # allow",
        "addRoleACL nrp-backend subscribePattern # allow",
        f"createClient {BACKEND_USER} -p {backend_password}",
        f"addClientRole {BACKEND_USER} nrp-backend",
        f"addClientRole {BACKEND_USER} admin",
    ):
        broker.ctrl("dynsec", *command.split())


@pytest.fixture(scope="module", params=["amqtt", "mosquitto"])
def secured_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredBroker]:
    if request.param == "amqtt":
        args = [sys.executable, "-m", "hbp_nrp_commons.broker", "--host", "127.0.0.1", "--port", "0"]
        server = start_server(args, env={"NRP_MQTT_SECRET": SECRET}, timeout=20)
        yield SecuredBroker(server.host, server.port, {})
        server.stop()
        return
    plugin = dynsec_plugin()
    if plugin is None:
        pytest.skip("mosquitto, its dynamic security plugin or mosquitto_ctrl is not installed")
    broker = DynsecMosquitto(tmp_path_factory.mktemp("dynsec"), plugin)
    try:
        set_up_dynsec(broker)
        yield SecuredBroker(broker.host, broker.port, {"NRP_MQTT_DYNSEC": "1"})
    finally:
        broker.stop()


class Client:
    """A paho client (anonymous unless given credentials) that records what it receives."""

    def __init__(self, broker: SecuredBroker, username: str | None = None) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"spoof-{uuid.uuid4().hex[:8]}")
        if username is not None:
            self.client.username_pw_set(username, credential(SECRET, username))
        self.received: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.events: queue.Queue[str] = queue.Queue()
        self.client.on_connect = lambda _c, _u, _f, reason, _p=None: self.events.put(str(reason))
        self.client.on_subscribe = lambda *_a: self.events.put("subscribed")
        self.client.on_message = lambda _c, _u, m: self.received.put(
            (m.topic, json.loads(m.payload or b"null"))
        )
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        reason = self.events.get(timeout=10)
        if reason != "Success":
            self.close()
        assert reason == "Success", reason

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        assert self.events.get(timeout=10) == "subscribed"

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(10)

    def next_status(self, timeout: float = 15) -> dict[str, Any]:
        while True:
            topic, payload = self.received.get(timeout=timeout)
            if topic.endswith("/status") and isinstance(payload, dict) and "state" in payload:
                return payload

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_spoofed_lifecycle_and_status_messages_change_nothing(
    start_backend: BackendFactory, storage: Storage, secured_broker: SecuredBroker, tmp_path: Path
) -> None:
    source = tmp_path / "mqtt_victim"
    source.mkdir()
    config = {"SimulationName": "mqtt_victim", "SimulationTimeout": 3600, "EngineConfigs": []}
    (source / "simulation_config.json").write_text(json.dumps(config))
    (source / "main_script.py").write_text(textwrap.dedent(ENDLESS))
    if "mqtt_victim" not in {e["name"] for e in storage.client().list_experiments(storage.alice, None)}:
        storage.client().upload_experiment(storage.alice, "mqtt_victim", source)
    backend = start_backend(
        NRP_SIMSERVER_MODULE="hbp_nrp_simserver",
        NRP_SANDBOX="auto",
        NRP_MQTT_BROKER_ADDRESS=f"127.0.0.1:{secured_broker.port}",
        NRP_MQTT_SECRET=SECRET,
        **secured_broker.env,
    )
    rest = backend.rest
    attacker = rest.launch("mqtt_victim")["simulationID"]  # another simulation, whose identity exists
    rest.wait_for(attacker, lambda s: s["ready"] or s["state"] == "failed", timeout=60)
    sim_id = rest.launch("mqtt_victim")["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"] or s["state"] == "failed", timeout=60)
    assert rest.set_state(sim_id, "started").json()["state"] == "started"

    # The password reaches the Simulation Server in its environment, on no command line.
    password = credential(SECRET, simulation_user("", sim_id))
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                assert password not in Path(f"/proc/{entry}/cmdline").read_text(), entry
            except OSError:
                continue

    watcher = Client(secured_broker)  # anonymous clients may subscribe: frontends read the status
    watcher.subscribe(mqtt.simulation_topic("", sim_id, "#"))
    assert watcher.next_status()["state"] == "started"

    anonymous = Client(secured_broker)
    other = Client(secured_broker, simulation_user("", attacker))  # another simulation's identity
    failed_status = {"state": "failed", "realTime": 1, "simulationTime": 1, "simulationTimeLeft": 0}
    failed_lifecycle = {
        "source_node": mqtt.SIMSERVER_NODE,
        "source_state": "started",
        "event": "failed",
        "target_state": "failed",
    }
    stopped_lifecycle = {**failed_lifecycle, "source_node": mqtt.BACKEND_NODE, "event": "paused"}
    stopped_lifecycle["target_state"] = "paused"
    try:
        for spoofer in (anonymous, other):
            spoofer.publish(mqtt.status_topic("", sim_id), failed_status)
            spoofer.publish(mqtt.lifecycle_topic("", sim_id), failed_lifecycle)
            spoofer.publish(mqtt.lifecycle_topic("", sim_id), stopped_lifecycle)
        # Two genuine statuses after the spoofs were acknowledged: the broker has handled them.
        assert [watcher.next_status()["state"] for _ in range(2)] == ["started", "started"]
        sim = rest.get(f"/simulation/{sim_id}").json()
        assert sim["state"] == "started" and sim["error"] is None, sim
        spoofed = [
            p for _t, p in list(watcher.received.queue) if isinstance(p, dict) and p.get("state") == "failed"
        ]
        assert spoofed == [], "a spoofed status reached the subscribers"
        response = rest.set_state(sim_id, "stopped")
        assert response.status_code == 200 and response.json()["state"] == "stopped", response.text
        assert rest.set_state(attacker, "stopped").json()["state"] == "stopped"
        if secured_broker.env.get("NRP_MQTT_DYNSEC") == "1":  # mosquitto forgets an ended simulation
            with pytest.raises(AssertionError, match="Not authorized"):
                Client(secured_broker, simulation_user("", sim_id))
    finally:
        for c in (watcher, anonymous, other):
            c.close()
