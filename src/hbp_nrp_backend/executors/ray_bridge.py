"""The Ray bridge: the one process of the REST server that is a Ray driver.

``python -m hbp_nrp_backend.executors.ray_bridge --fd N`` talks to the REST server over the
connected socket ``N`` (pickled tuples, :mod:`multiprocessing.connection` framing). Keeping the
driver out of the REST server's process isolates the server from Ray's fate: a driver that loses
the cluster exits, and Ray's threads, memory and output stay out of the API server. The REST
server detects a dead or silent bridge (:mod:`.ray_executor`) and fails the simulations it cannot
reach any more.

Messages from the REST server: ``("hello", settings)`` first, then ``("call", request_id, method,
kwargs)``. Answers: ``("result", request_id, value)`` or ``("error", request_id, kind, message)``
with ``kind`` one of :data:`ERROR_KINDS`. Events: ``("exited", sim_id, exit_fields)`` when a
Simulation Server ended, ``("died", sim_id, reason)`` when its actor or node died. The bridge
renews the lease of every actor it watches; it exits when the REST server's end closes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from hbp_nrp_backend.executors.ray_node import NodeLaunch, NodeUnreachable, SimulationActor, salvage_logs

logger = logging.getLogger("nrp.ray_bridge")

#: ``capacity``: nothing fits (409); ``unreachable``: a service or the cluster is unreachable (503);
#: ``invalid``: Ray refused the resource request (400); ``failed``: anything else.
ERROR_KINDS = ("capacity", "unreachable", "invalid", "failed")
#: Seconds a started simulation may take to clone its experiment and spawn on its node.
START_TIMEOUT = 600.0
#: Seconds between two rounds of the exit monitor.
WATCH_PERIOD = 0.2


class BridgeError(Exception):
    """A call failed; ``kind`` is one of :data:`ERROR_KINDS`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def actor_name(sim_id: int) -> str:
    """The Ray name of simulation ``sim_id``'s actor (unique in the REST server's namespace)."""
    return f"nrp-simulation-{sim_id}"


def sim_id_of(name: str) -> int | None:
    """The simulation id of an actor name made by :func:`actor_name`, else ``None``."""
    prefix = "nrp-simulation-"
    if name.startswith(prefix) and name[len(prefix) :].isdigit():
        return int(name[len(prefix) :])
    return None


#: Seconds to open a TCP connection to the cluster's GCS before giving up on joining.
CONNECT_TIMEOUT = 5.0


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Open (and close) a TCP connection to the GCS at ``host:port`` (``ray://`` and bare hosts
    are left to Ray).

    Raises:
        BridgeError: ``unreachable``, naming the address (Ray itself would retry for a minute).
    """
    import socket

    host, _, port = address.rpartition(":")
    if "://" in address or not port.isdigit():
        return
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise BridgeError("unreachable", f"nothing answers at {address} (RAY_ADDRESS): {exc}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text


class Bridge:
    """The driver side: creates actors, watches them, renews their leases, answers calls.

    Args:
        conn: the connection to the REST server.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._send_lock = threading.Lock()
        self._watched: dict[int, tuple[Any, Any]] = {}  # sim id -> (actor handle, wait_exit ref)
        self._starting: dict[int, Any] = {}  # sim id -> actor handle, until its start returns
        self._stopping: dict[int, Any] = {}  # sim id -> actor handle, until its stop returns
        self._watch_lock = threading.Lock()
        self._closed = threading.Event()
        self.namespace = "nrp"
        self.lease = 15.0
        self._actor_class: Any = None
        self._salvage: Any = None

    # -- set-up ---------------------------------------------------------------------------------
    def hello(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Join the cluster (``address``; ``auto`` starts a local head) in ``namespace``."""
        import ray

        self.namespace = settings["namespace"]
        self.lease = float(settings["lease"])
        address = settings["address"]
        options: dict[str, Any] = {
            "namespace": self.namespace,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            "configure_logging": True,
        }
        started_head = address == "auto"
        if not started_head:
            check_reachable(address)
        if started_head:
            options["include_dashboard"] = False
        else:
            options["address"] = address
        context = ray.init(**options)
        self._actor_class = ray.remote(max_concurrency=8, max_restarts=0)(SimulationActor)
        self._salvage = ray.remote(num_cpus=0, max_retries=0)(salvage_logs)
        return {
            "address": context.address_info.get("gcs_address") or address,
            "started_head": started_head,
            "nodes": sum(1 for node in ray.nodes() if node.get("Alive")),
            "ray_version": ray.__version__,
        }

    # -- calls ----------------------------------------------------------------------------------
    def ping(self) -> str:
        return "pong"

    def capacity(self) -> dict[str, Any]:
        """Totals of each alive node and the cluster's free resources."""
        import ray

        nodes = [
            {"id": node["NodeID"], "resources": dict(node.get("Resources", {}))}
            for node in ray.nodes()
            if node.get("Alive")
        ]
        return {"nodes": nodes, "available": ray.available_resources()}

    def start(self, launch: NodeLaunch, options: dict[str, Any], placement_timeout: float) -> dict[str, Any]:
        """Create the simulation's actor, wait for a node, start the simulation there and watch it.

        Raises:
            BridgeError: ``capacity`` when no node took the actor within ``placement_timeout``;
                ``unreachable`` when the node cannot reach storage or the broker; ``failed`` else.
        """

        name = actor_name(launch.sim_id)
        try:
            actor_class = self._actor_class.options(
                name=name, namespace=self.namespace, lifetime="detached", **options
            )
        except ValueError as exc:
            raise BridgeError("invalid", f"Ray refused the resource request: {_first_line(exc)}") from None
        actor = actor_class.remote(launch)
        with self._watch_lock:
            self._starting[launch.sim_id] = actor  # its lease is renewed while it clones
        try:
            return self._start(launch, actor, placement_timeout)
        finally:
            with self._watch_lock:
                self._starting.pop(launch.sim_id, None)

    def _start(self, launch: NodeLaunch, actor: Any, placement_timeout: float) -> dict[str, Any]:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        placed = actor.renew.remote()
        ready, _ = ray.wait([placed], timeout=placement_timeout)
        if not ready:
            ray.kill(actor, no_restart=True)
            raise BridgeError(
                "capacity", f"no node of the Ray cluster took the simulation within {placement_timeout:g} s"
            )
        try:
            info = ray.get(actor.start.remote(), timeout=START_TIMEOUT)
        except RayTaskError as exc:
            ray.kill(actor, no_restart=True)
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
            kind = "unreachable" if isinstance(cause, NodeUnreachable) else "failed"
            raise BridgeError(kind, _first_line(cause)) from None
        except (RayActorError, GetTimeoutError) as exc:
            ray.kill(actor, no_restart=True)
            raise BridgeError("failed", f"the simulation's Ray actor failed: {_first_line(exc)}") from None
        with self._watch_lock:
            self._watched[launch.sim_id] = (actor, actor.wait_exit.remote())
        return dict(info)

    def stop(self, sim_id: int, upload: bool = True, timeout_on_node: float = 190.0) -> dict[str, Any]:
        """Stop the simulation's actor (found by name if not watched) and end it.

        Its lease is renewed while it stops (a stop may take the whole grace period and an upload).

        Returns:
            the actor's stop result with ``found: True``, or ``{"found": False, "reason": ...}`` when
            there is no such actor (any more), it died meanwhile, or its stop failed (the actor is
            then killed; what its folder holds can still be salvaged).
        """
        import ray
        from ray.exceptions import RayActorError

        with self._watch_lock:
            watched = self._watched.pop(sim_id, None)
        actor = watched[0] if watched else None
        if actor is None:
            try:
                actor = ray.get_actor(actor_name(sim_id), namespace=self.namespace)
            except ValueError:
                return {"found": False, "reason": "no actor of this simulation is alive in the cluster"}
        with self._watch_lock:
            self._stopping[sim_id] = actor
        try:
            result = dict(ray.get(actor.stop.remote(upload), timeout=timeout_on_node))
        except RayActorError as exc:
            return {"found": False, "reason": f"its Ray actor died: {_first_line(exc)}"}
        except Exception as exc:
            ray.kill(actor, no_restart=True)
            return {"found": False, "reason": f"its stop failed: {_first_line(exc)}"}
        finally:
            with self._watch_lock:
                self._stopping.pop(sim_id, None)
        ray.kill(actor, no_restart=True)
        result["found"] = True
        return result

    def salvage(
        self, launch: NodeLaunch, node_id: str, sim_dir: str, timeout: float = 120.0
    ) -> dict[str, Any]:
        """Upload the logs a dead actor left in ``sim_dir`` on node ``node_id`` (if that node lives)."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        alive = any(node["NodeID"] == node_id and node.get("Alive") for node in ray.nodes())
        if not alive:
            return {"result": "lost", "reason": f"node {node_id} has left the Ray cluster"}
        strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
        try:
            return dict(
                ray.get(
                    self._salvage.options(scheduling_strategy=strategy).remote(launch, sim_dir),
                    timeout=timeout,
                )
            )
        except Exception as exc:
            return {
                "result": "lost",
                "reason": f"could not reach its folder on node {node_id}: {_first_line(exc)}",
            }

    def read_logs(self, sim_id: int, name: str | None, tail: int, offset: int) -> dict[str, Any]:
        """The running simulation's log files, read by its actor on its node."""
        import ray

        with self._watch_lock:
            watched = self._watched.get(sim_id)
        if watched is None:
            return {"files": None}
        try:
            return dict(ray.get(watched[0].read_logs.remote(name, tail, offset), timeout=30))
        except Exception as exc:  # died or stuck: as locally once the folder is gone
            logger.warning("Reading the logs of simulation %s failed: %s", sim_id, _first_line(exc))
            return {"files": None}

    def actors(self) -> list[str]:
        """Names of the alive actors in this namespace."""
        import ray

        return sorted(
            entry["name"] if isinstance(entry, dict) else str(entry)
            for entry in ray.util.list_named_actors(all_namespaces=False)
        )

    def kill(self, name: str) -> bool:
        """Kill actor ``name`` of this namespace (its simulation dies with it); False if there is none."""
        import ray

        try:
            ray.kill(ray.get_actor(name, namespace=self.namespace), no_restart=True)
        except ValueError:
            return False
        return True

    def actor_pid(self, sim_id: int) -> int:
        """The process id of simulation ``sim_id``'s actor (tests kill it)."""
        import ray

        actor = ray.get_actor(actor_name(sim_id), namespace=self.namespace)
        return int(ray.get(actor.pid.remote(), timeout=30))

    # -- background -------------------------------------------------------------------------------
    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self.conn.send(message)

    def watch(self) -> None:
        """Report each watched Simulation Server's end (``exited``) or its actor's death (``died``)."""
        import ray
        from ray.exceptions import RayActorError

        while not self._closed.is_set():
            try:
                self._watch_once(ray, RayActorError)
            except Exception:  # keep watching: a lost exit would leave a simulation without its end
                logger.exception("Watching the simulations' actors failed; retrying")
                self._closed.wait(1.0)

    def _watch_once(self, ray: Any, actor_error: type[BaseException]) -> None:
        with self._watch_lock:
            refs = {ref: sim_id for sim_id, (_actor, ref) in self._watched.items()}
        if not refs:
            self._closed.wait(WATCH_PERIOD)
            return
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=WATCH_PERIOD)
        for ref in ready:
            sim_id = refs[ref]
            with self._watch_lock:
                current = self._watched.get(sim_id)
                if current is None or current[1] != ref:
                    continue  # being stopped
                del self._watched[sim_id]
            try:
                self.send(("exited", sim_id, ray.get(ref)))
            except actor_error as exc:
                self.send(("died", sim_id, f"its Ray actor died: {_first_line(exc)}"))
            except OSError:
                raise
            except Exception as exc:
                self.send(("died", sim_id, f"its Ray actor could not be watched: {_first_line(exc)}"))

    def renew_leases(self) -> None:
        """Renew every watched actor's lease a few times per lease."""
        period = max(0.2, self.lease / 4)
        while not self._closed.wait(period):
            with self._watch_lock:
                actors = [actor for actor, _ref in self._watched.values()]
                actors += [*self._starting.values(), *self._stopping.values()]
            for actor in actors:
                actor.renew.remote()

    # -- loop -------------------------------------------------------------------------------------
    def serve(self) -> None:
        """Answer calls (each in a worker thread) until the REST server's end closes."""
        pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="bridge-call")
        threading.Thread(target=self.watch, name="bridge-watch", daemon=True).start()
        threading.Thread(target=self.renew_leases, name="bridge-lease", daemon=True).start()
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "call" and message[2] == "ping":
                self._answer(*message[1:])  # at once: a pool busy with long calls must not look dead
            elif message[0] == "call":
                pool.submit(self._answer, *message[1:])
        self._closed.set()

    def _answer(self, request_id: int, method: str, kwargs: dict[str, Any]) -> None:
        call = getattr(self, method, None) if method in CALLS else None
        try:
            if call is None:
                raise BridgeError("failed", f"unknown bridge call {method!r}")
            reply: tuple[Any, ...] = ("result", request_id, call(**kwargs))
        except BridgeError as exc:
            reply = ("error", request_id, exc.kind, str(exc))
        except Exception as exc:
            logger.exception("Bridge call %s failed", method)
            reply = ("error", request_id, "failed", _first_line(exc))
        try:
            self.send(reply)
        except OSError:
            pass


#: The methods the REST server may call.
CALLS = frozenset(
    {"ping", "capacity", "start", "stop", "salvage", "read_logs", "actors", "kill", "actor_pid"}
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="connected socket to the REST server")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    conn = Connection(args.fd)
    bridge = Bridge(conn)
    try:
        kind, settings = conn.recv()
        assert kind == "hello"
        try:
            conn.send(("ready", bridge.hello(settings)))
        except Exception as exc:
            conn.send(("refused", _first_line(exc)))
            return 1
        bridge.serve()
    except (EOFError, OSError):
        pass
    finally:
        started = time.monotonic()
        logger.info("Bridge closing")
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        except Exception:
            pass
        logger.info("Bridge closed in %.2f s", time.monotonic() - started)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
