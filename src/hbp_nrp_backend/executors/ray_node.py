"""The node side of the Ray executor: the actor that owns one simulation's Simulation Server.

:class:`SimulationActor` runs on the node Ray placed it on (the bridge wraps it with
``ray.remote``). It fetches the experiment from storage itself (no shared filesystem), checks that
the node reaches the broker, starts the Simulation Server in its own process group under the
sandbox (killed with the actor: ``PR_SET_PDEATHSIG``, and bwrap's ``--die-with-parent``), reports
its exit, and on stop terminates it and uploads its logs from the node. If the REST server stops
renewing its lease (``NRP_RAY_LEASE``: it crashed or lost the cluster), the actor stops the
simulation, uploads the logs and exits by itself, so nothing is left running. When an actor died
(killed, or its node lost), :func:`salvage_logs` uploads what its folder still holds.

Everything here must run without the REST server's process: arguments are plain dataclasses, and
the results are dictionaries of plain values.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hbp_nrp_backend.executors.spawn import SpawnSettings, spawn_simserver
from hbp_nrp_backend.live_logs import NoSuchLog, read_logs
from hbp_nrp_backend.logs import LogUploader, build_log_zip, is_permanent
from hbp_nrp_backend.simserver_process import ProcessExit, SimulationServerProcess
from hbp_nrp_commons.runtime_error_file import read_runtime_error

logger = logging.getLogger(__name__)

#: Seconds the node waits for a TCP connection to the broker before failing the simulation.
BROKER_CHECK_TIMEOUT = 3.0
#: Logs an actor could not upload when its lease ran out stay here, on the node.
UNSENT_LOGS = "nrp-ray-unsent-logs"


class NodeUnreachable(RuntimeError):
    """The node cannot reach a service the simulation needs; the message names it and the setting."""


@dataclass(frozen=True)
class NodeLaunch:
    """Everything a node needs to run one simulation (shipped to the actor by Ray).

    ``extra_env`` is what the Simulation Server's environment adds (broker address as the nodes see
    it, topic prefix, its MQTT credential); ``token`` is the launching user's, for the clone and the
    log upload.
    """

    sim_id: int
    experiment_id: str
    experiment_configuration: str
    main_script: str
    owner: str
    token: str
    storage_url: str
    mqtt_address: str
    extra_env: dict[str, str] = field(default_factory=dict)
    spawn: SpawnSettings = field(default_factory=SpawnSettings)
    storage_timeout: float = 30.0
    stop_grace: float = 10.0
    log_max_bytes: int = 100 * 1024 * 1024
    lease: float = 15.0


def node_identity() -> dict[str, Any]:
    """``{"executor": "ray", "id": <Ray node id>, "host": <node IP>, "hostname": ...}`` of this node."""
    import ray

    return {
        "executor": "ray",
        "id": ray.get_runtime_context().get_node_id(),
        "host": ray.util.get_node_ip_address(),
        "hostname": socket.gethostname(),
    }


def check_broker(address: str, timeout: float = BROKER_CHECK_TIMEOUT) -> None:
    """Open (and close) a TCP connection to the broker ``host:port``.

    Raises:
        NodeUnreachable: no connection within ``timeout``; the message names the address.
    """
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise NodeUnreachable(
            f"Node {socket.gethostname()} cannot reach the MQTT broker at {address} "
            f"(NRP_RAY_MQTT_ADDRESS): {exc}"
        ) from exc


def _uploader(launch: NodeLaunch, spool: Path) -> LogUploader:
    from hbp_nrp_backend.storage_client import StorageClient

    client = StorageClient(launch.storage_url, launch.storage_timeout, backoff=())
    return LogUploader(client, spool, max_bytes=launch.log_max_bytes)


def upload_logs(launch: NodeLaunch, sim_dir: Path) -> dict[str, Any]:
    """Zip the logs of ``sim_dir`` and upload them from this node, once.

    Returns:
        ``{"result": "uploaded", "stored": "<experiment>/<name>"}``, ``{"result": "empty"}``, or
        ``{"result": "failed", "reason": ..., "permanent": bool, "name": ..., "zip": bytes}``: the
        REST server then spools or keeps the archive as it does its own.
    """
    work = Path(tempfile.mkdtemp(prefix=f"nrp-logs-{launch.sim_id}-"))
    try:
        uploader = _uploader(launch, work / "spool")
        try:
            zip_path = build_log_zip(
                sim_dir, launch.sim_id, launch.experiment_configuration, work, launch.log_max_bytes
            )
        except OSError as exc:
            return {"result": "lost", "reason": f"could not zip the logs on the node: {exc}"}
        if zip_path is None:
            return {"result": "empty"}
        try:
            stored = uploader.deliver(
                zip_path, launch.token, launch.experiment_id, launch.owner, launch.sim_id
            )
            return {"result": "uploaded", "stored": stored}
        except Exception as exc:
            return {
                "result": "failed",
                "reason": str(exc) or type(exc).__name__,
                "permanent": is_permanent(exc),
                "name": zip_path.name,
                "zip": zip_path.read_bytes(),
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def salvage_logs(launch: NodeLaunch, sim_dir: str) -> dict[str, Any]:
    """After its actor died: upload the logs ``sim_dir`` still holds on this node, then remove it.

    Returns:
        as :func:`upload_logs`, or ``{"result": "gone"}`` when the folder is not there.
    """
    folder = Path(sim_dir)
    if not folder.is_dir():
        return {"result": "gone"}
    try:
        return upload_logs(launch, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _exit_fields(exit: ProcessExit) -> dict[str, Any]:
    return {
        "returncode": exit.returncode,
        "requested": exit.requested,
        "failed": exit.failed,
        "reason": exit.reason,
        "limit": exit.limit,
    }


class SimulationActor:
    """One simulation on a Ray node (a threaded actor: ``wait_exit`` blocks beside the other calls).

    Args:
        launch: what to run and where its services are.
    """

    def __init__(self, launch: NodeLaunch) -> None:
        self.launch = launch
        self.sim_dir: Path | None = None
        self.process: SimulationServerProcess | None = None
        self._last_renewal = time.monotonic()
        self._exited = threading.Event()
        self._exit: dict[str, Any] | None = None
        self._stop_lock = threading.Lock()
        self._stopped: dict[str, Any] | None = None
        self._lease_expired = False
        if launch.lease > 0:  # from creation on: an actor whose start never comes must end too
            threading.Thread(target=self._watch_lease, name="NrpLease", daemon=True).start()

    # -- called by the REST server (through the bridge) ------------------------------------------
    def start(self) -> dict[str, Any]:
        """Check the broker, fetch the experiment, start the Simulation Server.

        Returns:
            ``{"node": ..., "pid": ..., "sim_dir": ...}``.

        Raises:
            NodeUnreachable: the broker or storage cannot be reached from this node.
            Exception: the experiment could not be fetched or the process not started.
        """
        launch = self.launch
        node = node_identity()
        check_broker(launch.mqtt_address)
        sim_dir = Path(tempfile.mkdtemp(prefix=f"nrp.{launch.sim_id}."))
        self.sim_dir = sim_dir
        try:
            self._clone(sim_dir, node)
            self.process = spawn_simserver(
                sim_dir,
                launch.sim_id,
                launch.main_script,
                launch.experiment_configuration,
                launch.spawn,
                launch.extra_env,
                on_exit=self._process_exited,
                die_with_parent=True,
            )
        except BaseException:
            shutil.rmtree(sim_dir, ignore_errors=True)  # a failed start leaves nothing on the node
            self.sim_dir = None
            raise
        self._last_renewal = time.monotonic()
        return {"node": node, "pid": self.process.pid, "sim_dir": str(sim_dir)}

    def _clone(self, sim_dir: Path, node: dict[str, Any]) -> None:
        from hbp_nrp_backend.storage_client import StorageClient, StorageError

        launch = self.launch
        try:
            with StorageClient(launch.storage_url, launch.storage_timeout) as client:
                client.clone_experiment(launch.token, launch.experiment_id, sim_dir)
        except StorageError as exc:
            if exc.status_code is None:  # no answer at all: the node does not reach storage
                raise NodeUnreachable(
                    f"Node {node['hostname']} cannot reach the storage server at {launch.storage_url} "
                    f"(NRP_RAY_STORAGE_URL): {exc}"
                ) from exc
            raise

    def wait_exit(self) -> dict[str, Any]:
        """Block until the Simulation Server has ended; how it ended (``ProcessExit``'s fields)."""
        self._exited.wait()
        assert self._exit is not None
        return self._exit

    def renew(self) -> float:
        """The REST server is still there: keep running for another lease. Returns the lease."""
        self._last_renewal = time.monotonic()
        return self.launch.lease

    def stop(self, upload: bool = True, lease_expired: bool = False) -> dict[str, Any]:
        """Terminate the Simulation Server, read its runtime report, upload its logs, remove the folder.

        Idempotent: a second call returns the first one's result.

        Returns:
            ``{"exit": ... | None, "runtime_report": ... | None, "logs": ...}`` (see :func:`upload_logs`).
        """
        with self._stop_lock:
            if self._stopped is not None:
                return self._stopped
            self._lease_expired = lease_expired  # the exit reported to a watcher says why it ended
            exit = self.process.terminate(self.launch.stop_grace) if self.process is not None else None
            result: dict[str, Any] = {"exit": _exit_fields(exit) if exit else None, "runtime_report": None}
            result["by_lease"] = lease_expired
            if self.sim_dir is not None:
                result["runtime_report"] = read_runtime_error(self.sim_dir)
                result["logs"] = upload_logs(self.launch, self.sim_dir) if upload else {"result": "skipped"}
                shutil.rmtree(self.sim_dir, ignore_errors=True)
            else:
                result["logs"] = {"result": "empty"}
            self._stopped = result
            return result

    def read_logs(self, name: str | None, tail: int, offset: int) -> dict[str, Any]:
        """The log files of the running simulation: ``{"files": [...] | None}`` or ``{"missing": name}``."""
        if self.sim_dir is None or self._stopped is not None:
            return {"files": None}
        try:
            return {"files": read_logs(self.sim_dir, name, tail, offset)}
        except NoSuchLog:
            return {"missing": name}

    def pid(self) -> int:
        """The actor's own process id (tests kill it to play a crash)."""
        return os.getpid()

    # -- on its own -------------------------------------------------------------------------------
    def _process_exited(self, exit: ProcessExit) -> None:
        fields = _exit_fields(exit)
        if self._lease_expired:  # not asked for by the REST server: a failure with its reason
            fields.update(
                requested=False,
                failed=True,
                reason=f"Stopped on its Ray node: the REST server did not renew its lease of "
                f"{self.launch.lease:g} s (NRP_RAY_LEASE)",
            )
        self._exit = fields
        self._exited.set()

    def _watch_lease(self) -> None:
        """Stop the simulation and exit when the REST server has not renewed the lease in time."""
        lease = self.launch.lease
        while self._stopped is None:
            time.sleep(min(1.0, lease / 4))  # sleep-ok: a coarse watch of a lease of seconds
            if time.monotonic() - self._last_renewal <= lease:
                continue
            logger.warning(
                "Simulation %s: the REST server has not renewed its lease for %.0f s; stopping it",
                self.launch.sim_id,
                lease,
            )
            with self._stop_lock:
                if self._stopped is not None:  # the REST server's stop came first: it ends the actor
                    return
            result = self.stop(upload=True, lease_expired=True)
            if result.get("by_lease") is not True:
                return
            logs = result.get("logs", {})
            if logs.get("result") == "failed":
                keep = Path(tempfile.gettempdir()) / UNSENT_LOGS
                keep.mkdir(mode=0o700, exist_ok=True)
                (keep / logs["name"]).write_bytes(logs["zip"])
                logger.error(
                    "Simulation %s: logs not uploaded (%s); kept in %s",
                    self.launch.sim_id,
                    logs["reason"],
                    keep,
                )
            os._exit(0)  # the actor ends with its simulation; Ray records it as dead
