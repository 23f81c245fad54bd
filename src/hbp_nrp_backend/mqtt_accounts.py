"""Each simulation's MQTT identity on a mosquitto broker with its dynamic security plugin.

The embedded broker checks derived passwords itself (:mod:`hbp_nrp_commons.mqtt_identity`);
mosquitto cannot, so with ``NRP_MQTT_DYNSEC=1`` the REST server (user ``nrp_backend``, which needs
the plugin's admin rights) creates, before it spawns simulation N, a role ``nrp_simulation/N``
allowed to publish below ``[P/]nrp_simulation/N/`` and a client of that name with the derived
password, and deletes both once the simulation has ended (docs/security.md). Commands go to
``$CONTROL/dynamic-security/v1`` and are confirmed on its ``/response`` topic.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import Any

from hbp_nrp_commons import mqtt
from hbp_nrp_commons.settings import MqttSettings

logger = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"


class MqttAccountError(RuntimeError):
    """The broker refused or did not confirm a dynamic security command."""


class DynsecAccounts:
    """Creates and deletes simulations' clients through mosquitto's dynamic security plugin."""

    def __init__(self, settings: MqttSettings, client_id: str, timeout: float = 5.0) -> None:
        self.settings = settings
        self.client_id = client_id
        self.timeout = timeout
        self._lock = threading.Lock()
        self._connection: mqtt.MqttConnection | None = None
        self._pending: dict[str, dict[str, Any]] = {}
        self._answered = threading.Condition()

    def _connect(self) -> mqtt.MqttConnection:
        if self._connection is None:
            connection = mqtt.MqttConnection(self.settings, self.client_id)
            try:
                connection.connect(self.timeout)
                connection.subscribe(RESPONSE_TOPIC, self._on_response, qos=1)
            except mqtt.BrokerUnreachable:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _on_response(self, topic: str, payload: bytes) -> None:
        try:
            responses = json.loads(payload).get("responses", [])
        except (ValueError, AttributeError):
            return
        with self._answered:
            for response in responses:
                key = response.get("correlationData") if isinstance(response, dict) else None
                if key in self._pending:
                    self._pending[key] = response
            self._answered.notify_all()

    def _run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``commands`` and return the broker's response to each, in order."""
        with self._lock:
            connection = self._connect()
            keys = [uuid.uuid4().hex for _ in commands]
            with self._answered:
                self._pending.update({key: {} for key in keys})
            try:
                tagged = [
                    {**command, "correlationData": key} for command, key in zip(commands, keys, strict=True)
                ]
                connection.publish(
                    CONTROL_TOPIC, {"commands": tagged}, qos=1, wait=True, timeout=self.timeout
                )
                with self._answered:
                    if not self._answered.wait_for(lambda: all(self._pending[k] for k in keys), self.timeout):
                        raise MqttAccountError("the broker did not confirm its dynamic security commands")
                    return [self._pending[key] for key in keys]
            finally:
                with self._answered:
                    for key in keys:
                        self._pending.pop(key, None)

    def create(self, username: str, password: str) -> None:
        """A role allowed to publish below ``username/`` and subscribe to anything, and the client.

        Raises:
            MqttAccountError: the broker refused a command (the message says which and why).
            BrokerUnreachable: the broker could not be reached.
        """
        self.delete(username, quiet=True)  # left over by a crashed REST server
        acls = [
            {"acltype": "publishClientSend", "topic": f"{username}/#", "allow": True},
            {"acltype": "subscribePattern", "topic": "#", "allow": True},
        ]
        commands = [
            {"command": "createRole", "rolename": username, "acls": acls},
            {
                "command": "createClient",
                "username": username,
                "password": password,
                "roles": [{"rolename": username}],
            },
        ]
        for command, response in zip(commands, self._run(commands), strict=True):
            if response.get("error"):
                raise MqttAccountError(f"{command['command']} {username}: {response['error']}")

    def delete(self, username: str, quiet: bool = False) -> None:
        """Delete the client and role of ``username``; errors are logged (not at all when ``quiet``)."""
        commands = [
            {"command": "deleteClient", "username": username},
            {"command": "deleteRole", "rolename": username},
        ]
        try:
            responses = self._run(commands)
        except (MqttAccountError, mqtt.BrokerUnreachable) as exc:
            if not quiet:
                logger.warning("Could not delete the MQTT client %s: %s", username, exc)
            return
        for response in responses:
            if response.get("error") and not quiet:
                logger.warning("Deleting the MQTT client %s: %s", username, response["error"])

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
