"""Log archives of finished simulations: collect, zip, upload, and spool on failure.

A stop tries the upload once; when storage is unreachable or refuses it, the zip is moved to the
spool folder (``NRP_LOG_SPOOL_DIR``) with a JSON sidecar, and :class:`LogUploader` retries it in
the background until storage accepts it. Nothing is lost when storage is down.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from hbp_nrp_backend import events
from hbp_nrp_commons.timestamps import file_stamp

logger = logging.getLogger(__name__)

DATATRANSFER_ENGINE = "datatransfer_grpc_engine"


class LogStorage(Protocol):
    """What the uploader needs from the storage client."""

    def upload_logs(self, token: str, experiment_id: str, zip_path: Path, simulation_id: int) -> Any: ...


def log_zip_name(sim_id: int, when: float | None = None) -> str:
    """``<YYYYMMDDTHHMMSSZ>_simulation_<id>.log.zip``: the time in UTC, ISO 8601 basic form."""
    return f"{file_stamp(when)}_simulation_{sim_id}.log.zip"


def _data_directory(sim_dir: Path, config_name: str) -> Path | None:
    """The datatransfer engine's ``dataDirectory`` of the experiment configuration, if any."""
    try:
        config = json.loads((sim_dir / config_name).read_text())
    except (OSError, ValueError):
        return None
    engines = config.get("EngineConfigs") if isinstance(config, dict) else None
    for engine in engines if isinstance(engines, list) else []:
        if isinstance(engine, dict) and engine.get("EngineType") == DATATRANSFER_ENGINE:
            folder = engine.get("dataDirectory", "data")  # the schema's default
            if isinstance(folder, str) and folder:
                path = (sim_dir / folder).resolve()
                if path.is_dir() and path.is_relative_to(sim_dir.resolve()):
                    return path
    return None


def collect_logs(sim_dir: Path, config_name: str) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files a log archive holds.

    Returns:
        the top-level ``*.log`` and ``.*.log`` files, and the recorded data files as
        ``(path, name inside the zip)`` pairs under ``data/``.
    """
    logs = sorted(p for p in sim_dir.iterdir() if p.is_file() and p.name.endswith(".log"))
    data: list[tuple[Path, str]] = []
    data_dir = _data_directory(sim_dir, config_name)
    if data_dir is not None:
        for path in sorted(data_dir.rglob("*")):
            if path.is_file():
                data.append((path, f"data/{path.relative_to(data_dir).as_posix()}"))
    return logs, data


def build_log_zip(sim_dir: Path, sim_id: int, config_name: str, dest_dir: Path) -> Path | None:
    """Zip the logs of ``sim_dir`` into ``dest_dir``; ``None`` when there is nothing to keep."""
    if not sim_dir.is_dir():
        return None
    logs, data = collect_logs(sim_dir, config_name)
    if not logs and not data:
        logger.info("Simulation %s left no log files", sim_id)
        return None
    zip_path = dest_dir / log_zip_name(sim_id)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in logs:
            archive.write(path, path.name)
        for path, name in data:
            archive.write(path, name)
    return zip_path


def _private_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class LogUploader:
    """Uploads log archives, spools the ones storage does not take, and retries them.

    Args:
        storage: the storage client.
        spool_dir: where failed uploads wait (created, mode 0700).
        retry_interval: seconds between background retries.
        newest_token: returns the newest token seen from a user, used when storage rejects the
            stored one (e.g. it expired).
    """

    def __init__(
        self,
        storage: LogStorage,
        spool_dir: Path,
        retry_interval: float = 30.0,
        newest_token: Callable[[str], str | None] | None = None,
    ) -> None:
        self.storage = storage
        self.spool_dir = spool_dir
        self.retry_interval = retry_interval
        self.newest_token = newest_token or (lambda owner: None)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one archive -------------------------------------------------------------------------
    def _upload(self, zip_path: Path, token: str | None, experiment_id: str, owner: str, sim_id: int) -> str:
        """Upload ``zip_path``; returns the name storage keeps it under (named at upload time)."""
        from hbp_nrp_backend.storage_client import StorageUnauthorized

        try:
            stored = self.storage.upload_logs(token or "", experiment_id, zip_path, sim_id)
        except StorageUnauthorized:
            newer = self.newest_token(owner)
            if not newer or newer == token:
                raise
            logger.info("Storage refused the stored token of %s; retrying with a newer one", owner)
            stored = self.storage.upload_logs(newer, experiment_id, zip_path, sim_id)
        return stored if isinstance(stored, str) else zip_path.name

    def archive(
        self, sim_dir: Path, sim_id: int, config_name: str, experiment_id: str, owner: str, token: str | None
    ) -> str:
        """Zip and upload the logs of ``sim_dir``; spool the zip if the upload fails. Never raises.

        Returns:
            ``"uploaded"``, ``"spooled"``, ``"empty"`` (no logs) or ``"lost"`` (could not even spool).
        """
        work = Path(tempfile.mkdtemp(prefix=f"nrp-logs-{sim_id}-"))
        try:
            try:
                zip_path = build_log_zip(sim_dir, sim_id, config_name, work)
            except OSError:
                logger.exception("Could not zip the logs of simulation %s", sim_id)
                return "lost"
            if zip_path is None:
                return "empty"
            try:
                stored = self._upload(zip_path, token, experiment_id, owner, sim_id)
                events.logs_uploaded(sim_id, experiment_id, stored)
                return "uploaded"
            except Exception as exc:
                reason = exc
            try:
                spooled = self.spool(zip_path, experiment_id, owner, token, sim_id)
                events.logs_spooled(sim_id, spooled, reason, self.retry_interval)
                return "spooled"
            except OSError:
                logger.exception("Could not spool the logs of simulation %s (upload: %s)", sim_id, reason)
                return "lost"
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def spool(self, zip_path: Path, experiment_id: str, owner: str, token: str | None, sim_id: int) -> Path:
        """Move ``zip_path`` to the spool with its sidecar; return the spooled path."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.spool_dir, 0o700)
        target = self.spool_dir / zip_path.name
        shutil.move(str(zip_path), target)
        os.chmod(target, 0o600)
        sidecar = {"experimentID": experiment_id, "owner": owner, "token": token, "simulationID": sim_id}
        _private_write(target.with_name(target.name + ".json"), json.dumps(sidecar))
        return target

    def spooled(self) -> list[Path]:
        """The spooled archives waiting for a retry."""
        if not self.spool_dir.is_dir():
            return []
        return sorted(p for p in self.spool_dir.glob("*.zip") if p.with_name(p.name + ".json").exists())

    def retry_spooled(self) -> int:
        """Try every spooled archive once; return how many were uploaded."""
        done = 0
        with self._lock:
            for zip_path in self.spooled():
                sidecar = zip_path.with_name(zip_path.name + ".json")
                try:
                    meta = json.loads(sidecar.read_text())
                    stored = self._upload(
                        zip_path,
                        meta.get("token"),
                        meta["experimentID"],
                        meta.get("owner", ""),
                        int(meta.get("simulationID", 0)),
                    )
                except Exception as exc:
                    logger.info("Spooled %s still not uploaded: %s", zip_path.name, exc)
                    continue
                zip_path.unlink(missing_ok=True)
                sidecar.unlink(missing_ok=True)
                sim_id = int(meta.get("simulationID", 0))
                events.logs_uploaded(sim_id, meta["experimentID"], stored, spooled=True)
                done += 1
        return done

    # -- background retries ------------------------------------------------------------------
    def start(self) -> None:
        """Retry the spool now and then every ``retry_interval`` seconds, in a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="LogSpoolRetry", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.retry_spooled()
            except Exception:
                logger.exception("Retrying spooled logs failed")
            self._stop.wait(self.retry_interval)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
