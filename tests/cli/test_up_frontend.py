"""``nrp up`` for the NRP web frontend: one public port, the login, the registered REST server."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import requests

from tests.cli.test_up import UpProcess

INDEX = b"<!doctype html><title>build</title>"


def _line(up: UpProcess, heading: str) -> str:
    found = [line for line in up.lines if line.startswith(heading)]
    assert found, f"no {heading!r} line:\n" + "\n".join(up.lines)
    return found[0][len(heading) :]


def test_up_serves_frontend_login_registry_and_mqtt_on_one_port(tmp_path: Path) -> None:
    build = tmp_path / "build"
    build.mkdir()
    (build / "index.html").write_bytes(INDEX)
    up = UpProcess(tmp_path / "data", "--frontend", str(build))
    try:
        info = up.wait_ready()
        port_url = info["Storage"]
        frontend = _line(up, "Frontend: ")
        assert frontend == f"http://localhost:{port_url.rsplit(':', 1)[1]}/"
        user, password = _line(up, "Login: ").split(" / ")
        assert user == "nrpuser" and password

        # static files, the single-page fallback and the proxy API share the port
        assert requests.get(f"{port_url}/experiment/x", timeout=10).content == INDEX
        assert requests.get(f"{port_url}/proxy/storage/experiments", timeout=10).status_code == 477
        login = requests.post(
            f"{port_url}/proxy/authentication/authenticate",
            json={"user": user, "password": password},
            timeout=30,
        )
        assert login.status_code == 200, login.text
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {login.text}"
        names = [item["id"] for item in api.get(f"{port_url}/proxy/storage/experiments", timeout=10).json()]
        assert "tf_exchange" in names

        # the REST server of this nrp up is registered, polled and offered
        entry = api.get(f"{port_url}/proxy/server/local", timeout=10).json()
        assert entry["nrp-services"].rsplit(":", 1)[1] == info["REST API"].rsplit(":", 1)[1]
        deadline_ok = threading.Event()

        def offered() -> bool:
            return [e["id"] for e in api.get(f"{port_url}/proxy/availableServers", timeout=10).json()] == [
                "local"
            ]

        for _ in range(200):
            if offered():
                deadline_ok.set()
                break
            deadline_ok.wait(0.1)
        assert deadline_ok.is_set(), "the local REST server was never offered"

        # MQTT over WebSocket at ws://<port>/ reaches the broker: a browser-like anonymous subscriber
        # sees what the REST server publishes for a simulation it launches (anonymous clients may
        # only subscribe: publishing needs the identities nrp up hands its servers)
        host, port = port_url.split("://", 1)[1].rsplit(":", 1)
        got: queue.Queue[str] = queue.Queue()
        subscribed = threading.Event()
        ws = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, transport="websockets")
        ws.ws_set_options(path="/")
        ws.on_connect = lambda client, *_args: client.subscribe("#")
        ws.on_subscribe = lambda *_args: subscribed.set()
        ws.on_message = lambda _c, _u, msg: got.put(msg.topic)
        ws.connect(host, int(port))
        ws.loop_start()
        try:
            assert subscribed.wait(15)
            launched = requests.post(
                f"{info['REST API']}/simulation",
                json={"experimentID": "tf_exchange"},
                headers={"Authorization": f"Bearer {info['Token']}"},
                timeout=60,
            )
            assert launched.status_code == 201, launched.text
            topic_prefix = f"nrp_simulation/{launched.json()['simulationID']}/"
            while not got.get(timeout=60).startswith(topic_prefix):
                pass
        finally:
            ws.loop_stop()
            ws.disconnect()
        assert up.interrupt() == 0
    finally:
        up.kill()

    # a later start keeps the password and says how to reset it
    again = UpProcess(tmp_path / "data")
    try:
        again.wait_ready()
        assert "nrp user passwd nrpuser" in _line(again, "Login: ")
        assert not [line for line in again.lines if line.startswith("Frontend: ")]
        assert again.interrupt() == 0
    finally:
        again.kill()
