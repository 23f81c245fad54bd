"""MQTT identities: who may publish where (docs/security.md, "Sandbox and MQTT").

One secret (``NRP_MQTT_SECRET``) is shared by the broker and the REST server, never by a simulation.
Every password is derived from it and the user name (HMAC-SHA256), so the broker checks a password
without a user list and the REST server hands out new identities without telling the broker:

- ``nrp_backend`` (:data:`BACKEND_USER`), the REST server: publishes anywhere;
- ``[P/]nrp_simulation/<id>`` (:func:`simulation_user`), one simulation (its Simulation Server and
  engines): publishes only below its own topics ``[P/]nrp_simulation/<id>/...``;
- anonymous (no user name): subscribes to anything, publishes nothing (frontends, ``nrp sim watch``).

A simulation gets its password in the environment variable ``NRP_MQTT_PASSWORD``, never on a
command line; its user name is its topic root, which it knows.
"""

from __future__ import annotations

import hashlib
import hmac
import re

BACKEND_USER = "nrp_backend"
PASSWORD_VARIABLE = "NRP_MQTT_PASSWORD"
_SIMULATION_USER = re.compile(r"^(?:[^#+]+/)?nrp_simulation/[0-9]+$")


def credential(secret: str, username: str) -> str:
    """The password of ``username`` under ``secret``."""
    return hmac.new(secret.encode(), username.encode(), hashlib.sha256).hexdigest()


def verify(secret: str, username: str, password: str) -> bool:
    """True when ``password`` is ``username``'s under ``secret`` (constant-time comparison)."""
    return hmac.compare_digest(credential(secret, username), password)


def simulation_user(prefix: str, sim_id: int | str) -> str:
    """A simulation's user name: its topic root ``[prefix/]nrp_simulation/<id>``."""
    root = f"nrp_simulation/{sim_id}"
    prefix = prefix.strip("/")
    return f"{prefix}/{root}" if prefix else root


def may_publish(username: str | None, topic: str) -> bool:
    """Whether an authenticated ``username`` (``None``: anonymous) may publish to ``topic``."""
    if not username:
        return False
    if username == BACKEND_USER:
        return True
    return bool(_SIMULATION_USER.match(username)) and topic.startswith(username + "/")
