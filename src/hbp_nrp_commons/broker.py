"""The embedded MQTT broker (amqtt) that ``nrp up`` starts when no external broker is configured.

Run it as its own process so it does not share the REST server's interpreter lock and tests can
kill and restart it::

    python -m hbp_nrp_commons.broker [--host 127.0.0.1] [--port 1883]

Port 0 picks a free port. Once it accepts connections it prints
``Listening on mqtt://<host>:<port>`` on stdout. With ``NRP_MQTT_SECRET`` in its environment
(never on its command line) only the identities of :mod:`hbp_nrp_commons.mqtt_identity` may
publish and anonymous clients may only subscribe; without, anonymous clients may do anything.
Retained messages are kept in memory, SIGTERM and SIGINT stop it cleanly (exit code 0).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

logger = logging.getLogger(__name__)

LISTENING_PREFIX = "Listening on mqtt://"


def port_is_free(host: str, port: int) -> bool:
    """True if a TCP server could bind ``host:port`` right now (``nrp up`` checks 1883 with it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _broker_config(host: str, port: int, secret: str = "") -> dict[str, Any]:
    plugins: dict[str, Any] = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
    if secret:  # identities: anonymous clients only subscribe (hbp_nrp_commons.mqtt_identity)
        plugins = {
            "hbp_nrp_commons.broker_access.IdentityAuthPlugin": {"secret": secret},
            "hbp_nrp_commons.broker_access.IdentityTopicPlugin": {},
        }
    # No $SYS publisher, no packet logging.
    return {"listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}}, "plugins": plugins}


def _bound_port(broker: Any, fallback: int) -> int:
    """The port the default listener actually bound (differs from the requested one for port 0)."""
    # amqtt has no public accessor for its listening sockets; fall back to the requested port.
    servers = getattr(broker, "_servers", {})
    server = servers.get("default")
    sockets = getattr(getattr(server, "instance", None), "sockets", None) or []
    for sock in sockets:
        return int(sock.getsockname()[1])
    return fallback


def _broker_class() -> Any:
    """amqtt's Broker, corrected to send retained messages only to clients that subscribed.

    amqtt 0.12 sends a connecting client the retained messages matching *any* client's
    subscriptions (and, once it subscribes itself, again): a second copy of the lifecycle init
    message and unsolicited messages for others' topics. MQTT 3.1.1 (3.3.1.3) delivers a retained
    message to new subscriptions only, so the copy for a client without that subscription is dropped.
    """
    from amqtt.broker import Broker

    class SubscriberOnlyRetainBroker(Broker):
        async def _publish_retained_messages_for_subscription(self, subscription: Any, session: Any) -> None:
            subscribers = self._subscriptions.get(subscription[0], [])
            if any(s.client_id == session.client_id for s, _ in subscribers):
                await super()._publish_retained_messages_for_subscription(subscription, session)

    if not hasattr(Broker, "_publish_retained_messages_for_subscription"):  # a later amqtt: use it as is
        return Broker
    return SubscriberOnlyRetainBroker


async def serve(host: str, port: int, stop: asyncio.Event, ready: Any = None, secret: str = "") -> None:
    """Run the broker until ``stop`` is set.

    Args:
        host: address to bind.
        port: port to bind; 0 picks a free one.
        stop: set it to shut the broker down.
        ready: called with the bound port once the broker accepts connections.
        secret: with a secret, only identities derived from it may publish (anonymous clients
            subscribe only); without, anyone may publish.
    """
    broker = _broker_class()(_broker_config(host, port, secret))
    await broker.start()
    try:
        if ready is not None:
            ready(_bound_port(broker, port))
        await stop.wait()
    finally:
        await broker.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m hbp_nrp_commons.broker``."""
    parser = argparse.ArgumentParser(
        prog="python -m hbp_nrp_commons.broker", description="Run the embedded MQTT broker."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1883, help="port to bind, 0 for any (default 1883)")
    parser.add_argument("--verbose", action="store_true", help="log the broker's activity")
    args = parser.parse_args(argv)
    from hbp_nrp_commons.timestamps import UtcFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(UtcFormatter("%(asctime)s [%(name)-12.12s] [%(levelname)s]  %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    if not args.verbose:
        # amqtt logs every connection and a harmless error per dropped client at INFO/WARNING.
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)

    def ready(bound: int) -> None:
        sys.stdout.write(f"{LISTENING_PREFIX}{args.host}:{bound}\n")
        sys.stdout.flush()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(args.host, args.port, stop, ready, os.environ.get("NRP_MQTT_SECRET", "").strip())

    try:
        asyncio.run(run())
    except Exception as exc:  # a busy port, a bad address
        sys.stderr.write(f"MQTT broker failed: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
