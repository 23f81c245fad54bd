"""Real MQTT brokers for tests: the embedded amqtt broker and, when installed, mosquitto.

Both run as child processes on a port of their own, so a test can kill the broker and restart it
on the same port to exercise reconnects.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from hbp_nrp_commons.settings import MqttSettings
from tests.helpers.processes import ServerProcess, free_port, python, start_server
from tests.helpers.waiting import HANG, wait_until

HOST = "127.0.0.1"


def mosquitto_binary() -> str | None:
    """The mosquitto executable, or None (Debian installs it in /usr/sbin, often not on PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    candidate = Path("/usr/sbin/mosquitto")
    return str(candidate) if candidate.exists() else None


def broker_kinds() -> list[str]:
    """The broker kinds to test with: amqtt always, mosquitto when installed.

    ``NRP_TEST_BROKERS=amqtt`` (a comma-separated list) narrows the choice for a quick run.
    """
    available = ["amqtt", "mosquitto"] if mosquitto_binary() else ["amqtt"]
    wanted = [k.strip() for k in os.environ.get("NRP_TEST_BROKERS", "").split(",") if k.strip()]
    return [k for k in available if k in wanted] if wanted else available


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class BrokerProcess:
    """A broker child process: ``host``, ``port``, ``settings()``, ``kill()``, ``restart()``."""

    kind = ""
    host = HOST
    port = 0

    def settings(self, prefix: str = "") -> MqttSettings:
        """Settings that point at this broker."""
        return MqttSettings(host=self.host, port=self.port, prefix=prefix)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        raise NotImplementedError

    def is_running(self) -> bool:
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL the broker (no clean disconnects, like a crash)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Terminate the broker cleanly."""
        raise NotImplementedError

    def restart(self) -> None:
        """Kill the broker if it runs and start it again on the same port."""
        self.kill()
        failures: list[RuntimeError] = []

        def started() -> bool:
            try:
                self.start()
                return True
            except RuntimeError as exc:  # the old socket may linger a moment: try again
                failures.append(exc)
                return False

        try:
            wait_until(started, HANG, f"the {self.kind} broker to restart on port {self.port}", interval=0.2)
        except AssertionError:
            raise failures[-1] from None

    def ensure_running(self) -> None:
        if not self.is_running():
            self.restart()


class AmqttBroker(BrokerProcess):
    """``python -m hbp_nrp_commons.broker`` (the embedded broker of ``nrp up``)."""

    kind = "amqtt"

    def __init__(self) -> None:
        self._server: ServerProcess | None = None
        self.start()

    def start(self) -> None:
        args = [python(), "-m", "hbp_nrp_commons.broker", "--host", self.host, "--port", str(self.port)]
        self._server = start_server(args, timeout=HANG)
        self.port = self._server.port

    def is_running(self) -> bool:
        return self._server is not None and self._server.proc.poll() is None

    def kill(self) -> None:
        if self._server is not None:
            self._server.kill()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


class MosquittoBroker(BrokerProcess):
    """mosquitto with a generated configuration: one anonymous listener, no persistence."""

    kind = "mosquitto"

    def __init__(self, workdir: Path) -> None:
        binary = mosquitto_binary()
        assert binary is not None, "mosquitto is not installed"
        self._binary = binary
        self.port = free_port()
        self._config = workdir / "mosquitto.conf"
        self._log = workdir / "mosquitto.log"
        self._config.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen([self._binary, "-c", str(self._config)], stdout=log, stderr=log)
        proc = self._proc
        try:
            # it listens, or it exited (e.g. the port is still taken after a kill)
            wait_until(
                lambda: proc.poll() is not None or _accepts(self.host, self.port),
                HANG,
                f"mosquitto to listen on {self.address}",
                interval=0.05,
            )
        except AssertionError as exc:
            self.kill()
            raise RuntimeError(f"{exc}\n{self._log.read_text(errors='replace')}") from None
        if proc.poll() is not None:
            raise RuntimeError(
                f"mosquitto exited with {proc.returncode}\n{self._log.read_text(errors='replace')}"
            )

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


def start_broker(kind: str, workdir: Path) -> BrokerProcess:
    """Start a broker of ``kind`` (``amqtt`` or ``mosquitto``)."""
    if kind == "amqtt":
        return AmqttBroker()
    if kind == "mosquitto":
        return MosquittoBroker(workdir)
    raise ValueError(f"unknown broker kind {kind!r}")
