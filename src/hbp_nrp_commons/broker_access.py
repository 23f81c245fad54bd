"""amqtt plugins of the embedded broker when it has a secret (``NRP_MQTT_SECRET``).

:class:`IdentityAuthPlugin` accepts anonymous clients and clients whose password is their user
name's under the secret, and refuses any other password; :class:`IdentityTopicPlugin` lets anyone
subscribe and receive, and lets a client publish only where :func:`may_publish` allows (a denied
message is dropped; the client stays connected). Only the broker process imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from hbp_nrp_commons.mqtt_identity import may_publish, verify


class IdentityAuthPlugin(BaseAuthPlugin):
    """Anonymous, or a user name with its derived password."""

    @dataclass
    class Config:
        secret: str = ""

    async def authenticate(self, *, session: Any) -> bool:
        secret = self.config.secret
        if not session.username:
            session.is_anonymous = True
            return True
        return bool(secret) and verify(secret, session.username, session.password or "")


class IdentityTopicPlugin(BaseTopicPlugin):
    """Subscribe and receive: anyone; publish: the REST server anywhere, a simulation below its topics."""

    @dataclass
    class Config:
        pass

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        if action != Action.PUBLISH:
            return True
        username = None if session is None or session.is_anonymous else session.username
        return topic is not None and may_publish(username, topic)
