"""The Ray executor: each Simulation Server runs on a Ray cluster node, owned by a Ray actor.

The REST server reaches Ray through its bridge process (:mod:`.ray_bridge`), started with the
executor and restarted on demand; a heartbeat every :data:`PING_PERIOD` seconds kills a bridge that
stays silent for :data:`PING_TIMEOUT` seconds. When the bridge is lost, every simulation it
carried fails with that reason at once; stopping them later reaches their actors again through a
new bridge (or, if the cluster stays unreachable, each actor stops its simulation and uploads its
logs itself when its lease runs out).

Capacity: :meth:`RayExecutor.admit` reads the experiment's ``RayResources`` from storage, then
answers 409 when no alive node could ever hold the request, or when the cluster's free resources
minus the launches in flight do not hold it; a launch that still finds no node within
``NRP_RAY_PLACEMENT_TIMEOUT`` fails with 409 too.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hbp_nrp_backend import events
from hbp_nrp_backend.errors import ApiError, ClientError, Conflict, ServiceUnavailable
from hbp_nrp_backend.executors.local import spawn_settings
from hbp_nrp_backend.executors.ray_bridge import actor_name, sim_id_of
from hbp_nrp_backend.executors.ray_node import NodeLaunch
from hbp_nrp_backend.executors.ray_settings import (
    ResourceRequestError,
    Resources,
    experiment_resources,
)
from hbp_nrp_backend.live_logs import NoSuchLog
from hbp_nrp_backend.logs import PermanentUploadError
from hbp_nrp_backend.simserver_process import ProcessExit, classify_exit

if TYPE_CHECKING:
    from hbp_nrp_backend.launch import LaunchRequest
    from hbp_nrp_backend.simulation import Simulation, SimulationHost

logger = logging.getLogger(__name__)

#: Seconds between two pings of the bridge, and the silence after which it is killed.
PING_PERIOD = 1.0
PING_TIMEOUT = 5.0
#: Seconds to join the cluster (a local head takes a few).
HELLO_TIMEOUT = 120.0


class BridgeLost(ConnectionError):
    """The bridge process died or stopped answering."""


class TransientUploadError(Exception):
    """A node could not upload logs for a reason a retry may fix (they are spooled here)."""


@dataclass
class Admission:
    """A launch admitted on the cluster: what it reserves, held until its start ends."""

    resources: Resources


class BridgeProcess:
    """One bridge process and the connection to it.

    Args:
        settings: the hello message's settings (address, namespace, lease).
        on_event: called with ``(kind, sim_id, payload)`` for each event, from the reader thread.
        on_lost: called once with the reason when the bridge dies or is killed.
    """

    def __init__(self, settings: dict[str, Any], on_event: Any, on_lost: Any) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env.pop("RAY_ADDRESS", None)  # the bridge is told the address; ``auto`` means a local head
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hbp_nrp_backend.executors.ray_bridge", "--fd", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        theirs.close()
        # shutdown() on the socket, not close() on the connection, ends it: a close does not wake the
        # reader thread blocked in recv(), and the bridge would never see the end
        self._socket = ours
        self.conn = Connection(os.dup(ours.fileno()))
        self._on_event = on_event
        self._on_lost = on_lost
        self._send_lock = threading.Lock()
        self._pending: dict[int, tuple[threading.Event, list[Any]]] = {}
        self._ids = itertools.count()
        self.lost: str | None = None
        self.conn.send(("hello", settings))
        if not self.conn.poll(HELLO_TIMEOUT):
            self.kill()
            raise BridgeLost(f"Ray did not answer within {HELLO_TIMEOUT:g} s")
        try:
            kind, payload = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.kill()
            raise BridgeLost(
                f"the Ray bridge exited while joining the cluster (code {self.proc.poll()})"
            ) from exc
        if kind != "ready":
            self.kill()
            raise BridgeLost(str(payload))
        self.info: dict[str, Any] = payload
        threading.Thread(target=self._read, name="RayBridgeReader", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, method: str, timeout: float, **kwargs: Any) -> Any:
        """Call ``method`` in the bridge and wait up to ``timeout`` seconds for its answer.

        Raises:
            BridgeLost: the bridge is gone or did not answer in time.
            Conflict, ServiceUnavailable, ApiError: the bridge's ``capacity``, ``unreachable`` and
                ``failed`` errors.
        """
        if self.lost is not None:
            raise BridgeLost(self.lost)
        request_id = next(self._ids)
        done = threading.Event()
        box: list[Any] = []
        self._pending[request_id] = (done, box)
        try:
            with self._send_lock:
                self.conn.send(("call", request_id, method, kwargs))
            if not done.wait(timeout):
                raise BridgeLost(f"the Ray bridge did not answer {method} within {timeout:g} s")
        except OSError as exc:
            raise BridgeLost(f"the Ray bridge is gone: {exc}") from exc
        finally:
            self._pending.pop(request_id, None)
        kind, *rest = box
        if kind == "result":
            return rest[0]
        if kind == "lost":
            raise BridgeLost(rest[0])
        error_kind, message = rest
        if error_kind == "capacity":
            raise Conflict(f"The Ray cluster has no room for this simulation: {message}")
        if error_kind == "unreachable":
            raise ServiceUnavailable(message)
        if error_kind == "invalid":
            raise ClientError(message)
        raise ApiError(message)

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                break
            if message[0] in ("result", "error"):
                waiter = self._pending.get(message[1])
                if waiter is not None:
                    waiter[1][:] = [message[0], *message[2:]]
                    waiter[0].set()
            else:
                try:
                    self._on_event(message[0], message[1], message[2])
                except Exception:
                    logger.exception("Handling the bridge event %s failed", message[0])
        code = self.proc.poll()
        self.lost = self.lost or (
            f"the Ray bridge exited (code {code})"
            if code is not None
            else "the Ray bridge closed its connection"
        )
        for done, box in list(self._pending.values()):
            box[:] = ["lost", self.lost]
            done.set()
        with self._send_lock:  # no send may meet a closed (or reused) descriptor
            self.conn.close()
            self._socket.close()
        self._on_lost(self, self.lost)

    def kill(self, reason: str | None = None) -> None:
        """SIGKILL the bridge (its reader then reports it lost)."""
        if reason and self.lost is None:
            self.lost = reason
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        """Close our end: the bridge shuts its driver down and exits."""
        self.lost = self.lost or "closed"
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._socket.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()


class RayExecutor:
    """Simulation Servers as Ray actors on the cluster at ``RAY_ADDRESS``."""

    name = "ray"

    def __init__(self, host: SimulationHost) -> None:
        self._host = host
        self.settings = host.config.ray
        self._bridge: BridgeProcess | None = None
        self._bridge_lock = threading.Lock()
        self._reserved: list[Resources] = []
        self._reserve_lock = threading.Lock()
        self._running: dict[int, Simulation] = {}
        self._closed = threading.Event()

    # -- the bridge ---------------------------------------------------------------------------------
    def bridge(self) -> BridgeProcess:
        """The live bridge, started (joining the cluster) if there is none.

        Raises:
            ServiceUnavailable: the cluster cannot be joined.
        """
        with self._bridge_lock:
            if self._closed.is_set():
                raise ServiceUnavailable(
                    "The REST server is shutting down: the Ray cluster is no longer reached"
                )
            if self._bridge is not None and self._bridge.lost is None:
                return self._bridge
            hello = {
                "address": self.settings.address,
                "namespace": self.settings.namespace,
                "lease": self.settings.lease,
            }
            try:
                bridge = BridgeProcess(hello, self._on_event, self._on_lost)
            except BridgeLost as exc:
                raise ServiceUnavailable(
                    f"Cannot join the Ray cluster at {self.settings.address}: {exc}"
                ) from exc
            info = bridge.info
            if info.get("started_head"):
                logger.warning(
                    "Ray executor: RAY_ADDRESS is auto, so this REST server started a local Ray head at %s "
                    "(Ray %s); set RAY_ADDRESS to join an existing cluster",
                    info.get("address"),
                    info.get("ray_version"),
                )
            else:
                logger.warning(
                    "Ray executor: joined the Ray cluster at %s (%s nodes alive, Ray %s)",
                    info.get("address"),
                    info.get("nodes"),
                    info.get("ray_version"),
                )
            self._bridge = bridge
            return bridge

    def call(self, method: str, timeout: float = 60.0, retry: bool = True, **kwargs: Any) -> Any:
        """Call the bridge; with ``retry`` (calls that may run twice), once more through a new
        bridge when it was lost.

        Raises:
            ServiceUnavailable: the cluster cannot be reached (no bridge, or it was lost).
            ApiError: the call's own error (see :meth:`BridgeProcess.call`).
        """
        for attempt in (1, 2):
            try:
                return self.bridge().call(method, timeout, **kwargs)
            except BridgeLost as exc:
                if not retry or attempt == 2:
                    raise ServiceUnavailable(f"Lost the connection to the Ray cluster: {exc}") from exc
        raise AssertionError("unreachable")

    def _heartbeat(self) -> None:
        """Ping the bridge every :data:`PING_PERIOD`; once per lease, :meth:`sweep` the namespace."""
        last_sweep = time.monotonic()
        while not self._closed.wait(PING_PERIOD):
            bridge = self._bridge
            if bridge is None or bridge.lost is not None:
                continue
            if self.settings.lease > 0 and time.monotonic() - last_sweep >= self.settings.lease:
                last_sweep = time.monotonic()
                self.sweep()  # e.g. an actor whose start went on after the REST server gave up
            try:
                bridge.call("ping", PING_TIMEOUT)
            except BridgeLost as exc:
                if bridge.lost is None:
                    logger.error("The Ray bridge is silent (%s); killing it", exc)
                    bridge.kill(f"the Ray bridge did not answer for {PING_TIMEOUT:g} s")

    def _on_lost(self, bridge: BridgeProcess, reason: str) -> None:
        """Every simulation the lost bridge carried fails now (a new bridge stops their actors)."""
        if self._closed.is_set():
            return
        logger.error("Lost the connection to the Ray cluster: %s", reason)
        for sim in list(self._running.values()):
            self._running.pop(sim.id, None)
            message = f"Lost the connection to the Ray cluster ({reason})"
            sim.process_exited(ProcessExit(-1, False, True, message))

    def _on_event(self, kind: str, sim_id: int, payload: Any) -> None:
        sim = self._running.pop(sim_id, None)
        if sim is None:
            return
        if kind == "exited":
            requested = sim.stop_target is not None  # the node knows only whether *it* stopped it
            failed = bool(payload["failed"]) or classify_exit(int(payload["returncode"]), requested)
            reason = str(payload.get("reason") or "")
            sim.process_exited(
                ProcessExit(int(payload["returncode"]), requested, failed, reason, bool(payload.get("limit")))
            )
        else:
            node = (sim.record.node or {}).get("host", "?")
            sim.process_exited(
                ProcessExit(-1, False, True, f"Simulation on Ray node {node} ended: {payload}")
            )

    # -- Executor -------------------------------------------------------------------------------------
    def admit(self, token: str | None, request: LaunchRequest) -> Admission:
        resources = self._requested_resources(token, request)
        capacity = self.call("capacity", timeout=30.0)
        wanted = resources.as_ray_totals()
        if not any(_fits(wanted, node["resources"]) for node in capacity["nodes"]):
            raise Conflict(
                "No node of the Ray cluster has the resources this simulation asks for "
                f"({resources.describe()})"
            )
        with self._reserve_lock:
            free = dict(capacity["available"])
            for other in self._reserved:
                for key, amount in other.as_ray_totals().items():
                    free[key] = free.get(key, 0.0) - amount
            if not _fits(wanted, free):
                raise Conflict(
                    "The Ray cluster has no room for another simulation now: it needs "
                    f"{resources.describe()}; stop one first"
                )
            self._reserved.append(resources)
        return Admission(resources)

    def release(self, admission: Any) -> None:
        if not isinstance(admission, Admission):
            return
        with self._reserve_lock:
            if admission.resources in self._reserved:
                self._reserved.remove(admission.resources)

    def _requested_resources(self, token: str | None, request: LaunchRequest) -> Resources:
        """The defaults, with the experiment's ``RayResources`` (400 when invalid)."""
        storage: Any = self._host.storage
        try:
            raw = storage.get_file(
                token or "", request.experiment_id, request.experiment_configuration, by_name=True
            )
            config = json.loads(raw)
        except Exception:
            return self.settings.defaults  # no readable config: the start reports it as always
        if not isinstance(config, dict):
            return self.settings.defaults
        try:
            return experiment_resources(self.settings.defaults, config, request.experiment_configuration)
        except ResourceRequestError as exc:
            raise ClientError(str(exc)) from exc

    def node_launch(self, sim: Simulation) -> NodeLaunch:
        """What sim's node needs (services as the nodes reach them)."""
        host = self._host
        config = host.config
        record = sim.record
        mqtt_address = self.settings.mqtt_address or config.settings.mqtt.address
        return NodeLaunch(
            sim_id=sim.id,
            experiment_id=record.experiment_id,
            experiment_configuration=record.experiment_configuration,
            main_script=record.main_script,
            owner=record.owner,
            token=record.token or "",
            storage_url=self.settings.storage_url or config.settings.storage_url,
            mqtt_address=mqtt_address,
            extra_env=sim.simserver_environment(mqtt_address),
            spawn=spawn_settings(host),
            storage_timeout=config.settings.storage_timeout,
            stop_grace=config.stop_grace,
            log_max_bytes=config.log_max_bytes,
            lease=self.settings.lease,
        )

    def start(self, sim: Simulation, admission: Any) -> None:
        resources = admission.resources if isinstance(admission, Admission) else self.settings.defaults
        options = resources.ray_options()
        self._running[sim.id] = sim  # before the start returns: its process may end at once
        try:
            info = self.call(
                "start",
                timeout=self.settings.placement_timeout + 660.0,
                retry=False,  # a second start would meet the first one's actor
                launch=self.node_launch(sim),
                options=options,
                placement_timeout=self.settings.placement_timeout,
            )
        except BaseException:
            self._running.pop(sim.id, None)
            self._forget_actor(sim.id)
            raise
        record = sim.record
        record.node = {**info["node"], "actor": actor_name(sim.id), "resources": resources.describe()}
        record.sim_dir = info["sim_dir"]
        sim.sim_dir = Path(info["sim_dir"])  # on the node: only for making paths relative
        sim.save()
        logger.info(
            "Simulation %s runs on Ray node %s (%s)", sim.id, record.node.get("host"), record.node.get("id")
        )

    def _forget_actor(self, sim_id: int) -> None:
        """After a failed start: kill the actor if it exists after all (the start may have gone on in
        the bridge after we stopped waiting, or a new bridge never knew it)."""
        try:
            self.call("kill", timeout=30.0, name=actor_name(sim_id))
        except ApiError as exc:
            logger.warning("Could not make sure simulation %s left no actor: %s", sim_id, exc.message)

    def stop(self, sim: Simulation) -> None:
        self._running.pop(sim.id, None)
        record = sim.record
        if record.node is None or record.node.get("executor") != "ray":
            return  # never placed
        self._stop_actor(sim)

    def _stop_actor(self, sim: Simulation) -> None:
        record = sim.record
        launch = self.node_launch(sim)
        try:
            grace = self._host.config.stop_grace
            result = self.call("stop", timeout=grace + 200.0, sim_id=sim.id, timeout_on_node=grace + 180.0)
        except ApiError as exc:
            message = (
                f"The Ray cluster is unreachable ({exc}); the simulation's actor stops it and uploads "
                f"its logs itself when its lease of {self.settings.lease:g} s (NRP_RAY_LEASE) runs out"
            )
            logger.error("Simulation %s: %s", sim.id, message)
            sim.note_logs_problem(message)
            return
        if result.get("found"):
            report = result.get("runtime_report")
            sim.sync.merge_runtime_report(report if isinstance(report, dict) else None, read_folder=False)
            self._settle_logs(sim, result.get("logs") or {})
            return
        node_id = (record.node or {}).get("id")
        if not node_id or not record.sim_dir:
            return
        try:
            salvaged = self.call(
                "salvage", timeout=150.0, launch=launch, node_id=node_id, sim_dir=record.sim_dir
            )
        except ApiError as exc:
            salvaged = {"result": "lost", "reason": str(exc)}
        self._settle_logs(sim, salvaged)

    def _settle_logs(self, sim: Simulation, logs: dict[str, Any]) -> None:
        """Report a node's upload, or spool or keep the archive it could not upload."""
        record = sim.record
        outcome = logs.get("result")
        if outcome == "uploaded":
            folder, _, name = str(logs.get("stored", "")).partition("/")
            events.logs_uploaded(sim.id, folder, name)
        elif outcome == "failed":
            work = Path(tempfile.mkdtemp(prefix=f"nrp-logs-{sim.id}-"))
            try:
                zip_path = work / str(logs.get("name") or f"simulation_{sim.id}.log.zip")
                zip_path.write_bytes(logs.get("zip") or b"")
                reason: Exception = (
                    PermanentUploadError(logs.get("reason", ""))
                    if logs.get("permanent")
                    else TransientUploadError(logs.get("reason", ""))
                )
                self._host.uploader.settle(
                    zip_path, sim.id, record.experiment_id, record.owner, record.token, reason
                )
            finally:
                shutil.rmtree(work, ignore_errors=True)
        elif outcome == "lost":
            node = (record.node or {}).get("host", "?")
            sim.note_logs_problem(f"The logs stayed on Ray node {node}: {logs.get('reason')}")

    def read_logs(
        self, sim: Simulation, name: str | None, tail: int, offset: int
    ) -> list[dict[str, Any]] | None:
        answer = self.call("read_logs", timeout=40.0, sim_id=sim.id, name=name, tail=tail, offset=offset)
        if "missing" in answer:
            raise NoSuchLog(str(answer["missing"]))
        files = answer.get("files")
        return list(files) if files is not None else None

    def reconcile(self, leftovers: Iterable[Simulation]) -> None:
        for sim in leftovers:
            if sim.record.node is not None and sim.record.node.get("executor") == "ray":
                self._stop_actor(sim)
        self.sweep()

    def sweep(self) -> list[str]:
        """Kill the actors of this namespace that no active simulation of this server owns.

        Returns:
            the names of the killed actors.
        """
        try:
            names = self.call("actors", timeout=30.0)
        except ApiError as exc:
            logger.error("Could not list the Ray actors of this server: %s", exc)
            return []
        known = {sim.id for sim in self._host_simulations() if sim.active and sim.lifecycle is not None}
        killed = []
        for name in names:
            sim_id = sim_id_of(name)
            if sim_id is None or sim_id in known:
                continue
            logger.warning("Killing Ray actor %s: no simulation of this server owns it", name)
            try:
                self.call("kill", timeout=30.0, name=name)
                killed.append(name)
            except ApiError as exc:
                logger.error("Could not kill Ray actor %s: %s", name, exc)
        return killed

    def _host_simulations(self) -> list[Simulation]:
        everything = getattr(self._host, "all", None)
        return list(everything()) if callable(everything) else []

    def start_service(self) -> None:
        try:
            self.bridge()
        except ServiceUnavailable as exc:  # launches answer 503 until the cluster can be joined
            logger.error("Ray executor: %s; launches fail with 503 until it can be joined", exc.message)
        threading.Thread(target=self._heartbeat, name="RayHeartbeat", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with self._bridge_lock:
            bridge, self._bridge = self._bridge, None
        if bridge is not None:
            bridge.close()

    # -- for tests and tools ---------------------------------------------------------------------------
    @property
    def bridge_pid(self) -> int | None:
        bridge = self._bridge
        return bridge.pid if bridge is not None and bridge.lost is None else None


def _fits(wanted: dict[str, float], have: dict[str, Any]) -> bool:
    return all(float(have.get(key, 0.0)) + 1e-9 >= amount for key, amount in wanted.items())
