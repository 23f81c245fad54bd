"""Log archives of finished simulations: collect, zip, upload, and spool on failure.

Collecting never follows a symlink (a ``*.log`` link to another user's file is skipped) and reads
only regular files; the archive holds at most ``max_bytes`` of file content, a cut file ends with a
note and ``TRUNCATED.txt`` lists what was cut.

A stop tries the upload once, into the experiment. When storage refuses it for good (403: the
launcher may read the experiment but not write it, e.g. someone else's public experiment; 404: it
is gone; 400, 409, 413) the zip goes to the launcher's own storage space instead, the experiment
``nrp-logs-<owner>`` (created for them when missing; never one someone else owns). When that fails
for good too, the zip is kept in ``<spool>/failed/`` for ``failed_keep`` seconds and the failure is
reported (``on_failure``: the simulation's ``error``); it is never retried. Transient failures
(storage unreachable, 5xx, a rejected token) move the zip to the spool folder (``NRP_LOG_SPOOL_DIR``)
with a JSON sidecar, and :class:`LogUploader` retries it in the background with a backoff that
doubles up to 16 times the retry interval.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from hbp_nrp_backend import events
from hbp_nrp_commons.timestamps import file_stamp, iso_utc

logger = logging.getLogger(__name__)

DATATRANSFER_ENGINE = "datatransfer_grpc_engine"


#: Storage statuses no retry can change: the zip goes to the owner's own space, or is kept.
PERMANENT_STATUSES = frozenset({400, 403, 404, 409, 413})
#: The retry interval of a transient failure doubles after each attempt, up to this factor.
MAX_BACKOFF_FACTOR = 16
#: Default total of file content one archive holds (``NRP_LOG_MAX_MB``).
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
TRUNCATED_NOTE = "TRUNCATED.txt"


class LogStorage(Protocol):
    """What the uploader needs from the storage client."""

    def upload_logs(self, token: str, experiment_id: str, zip_path: Path, simulation_id: int) -> Any: ...

    def list_experiments(
        self, token: str, ctx: str | None, get_all: bool = False, name: str | None = None
    ) -> Any: ...

    def create_experiment(self, token: str, name: str) -> Any: ...


class PermanentUploadError(Exception):
    """Storage refused the logs for good (no retry changes it); the message says why."""


def is_permanent(exc: BaseException) -> bool:
    """True for a storage refusal that retrying cannot change (403, 404, 400, 409, 413)."""
    if isinstance(exc, PermanentUploadError):
        return True
    return getattr(exc, "status_code", None) in PERMANENT_STATUSES


def own_logs_experiment(owner: str) -> str:
    """The experiment holding ``owner``'s logs that could not go to their experiment."""
    safe = re.sub(r"[^A-Za-z0-9_.@-]", "_", owner)[:200] or "user"
    return f"nrp-logs-{safe}"


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


def _is_regular(path: Path) -> bool:
    """A regular file that is not a symlink (``lstat``: links are never followed)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def collect_logs(sim_dir: Path, config_name: str) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files a log archive holds; symlinks (and what they point to) are never included.

    Returns:
        the top-level ``*.log`` and ``.*.log`` files, and the recorded data files as
        ``(path, name inside the zip)`` pairs under ``data/``.
    """
    logs = sorted(p for p in sim_dir.iterdir() if p.name.endswith(".log") and _is_regular(p))
    data: list[tuple[Path, str]] = []
    data_dir = _data_directory(sim_dir, config_name)
    if data_dir is not None and not any(part.is_symlink() for part in _parents_within(data_dir, sim_dir)):
        for root, dirs, files in os.walk(data_dir):  # os.walk does not descend into linked folders
            for name in sorted(files):
                path = Path(root) / name
                if _is_regular(path):
                    data.append((path, f"data/{path.relative_to(data_dir).as_posix()}"))
            dirs.sort()
        data.sort(key=lambda item: item[1])
    return logs, data


def _parents_within(path: Path, top: Path) -> list[Path]:
    """``path`` and its parents up to (not including) ``top``, as spelled under ``top``."""
    try:
        relative = path.relative_to(top.resolve())
    except ValueError:
        return [path]
    parts, current = [], top
    for part in relative.parts:
        current = current / part
        parts.append(current)
    return parts


def _copy_capped(archive: zipfile.ZipFile, path: Path, name: str, budget: int) -> tuple[int, int] | None:
    """Add ``path`` as ``name``, at most ``budget`` bytes of it (opened without following links).

    Returns:
        ``(bytes kept, file size)``, or ``None`` when it is not a regular file any more.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        size = info.st_size
        kept = 0
        with archive.open(name, "w", force_zip64=True) as target:
            while kept < budget:
                chunk = source.read(min(1024 * 1024, budget - kept))
                if not chunk:
                    break
                target.write(chunk)
                kept += len(chunk)
            if kept < size:
                target.write(f"\n[truncated by the NRP backend: {kept} of {size} bytes kept]\n".encode())
    return kept, size


def build_log_zip(
    sim_dir: Path, sim_id: int, config_name: str, dest_dir: Path, max_bytes: int = DEFAULT_MAX_BYTES
) -> Path | None:
    """Zip the logs of ``sim_dir`` into ``dest_dir``; ``None`` when there is nothing to keep.

    At most ``max_bytes`` of file content go in; what is cut is listed in ``TRUNCATED.txt``.
    """
    if not sim_dir.is_dir():
        return None
    logs, data = collect_logs(sim_dir, config_name)
    if not logs and not data:
        logger.info("Simulation %s left no log files", sim_id)
        return None
    zip_path = dest_dir / log_zip_name(sim_id)
    budget = max_bytes
    cut: list[str] = []
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, name in [(path, path.name) for path in logs] + data:
            copied = _copy_capped(archive, path, name, budget)
            if copied is None:
                continue
            kept, size = copied
            budget -= kept
            if kept < size:
                cut.append(f"{name}: {kept} of {size} bytes kept")
        if cut:
            note = f"The logs exceeded the limit of {max_bytes} bytes (NRP_LOG_MAX_MB); cut:\n"
            archive.writestr(TRUNCATED_NOTE, note + "\n".join(cut) + "\n")
            logger.warning("Simulation %s: logs over %d bytes were truncated", sim_id, max_bytes)
    return zip_path


def _reason(exc: BaseException) -> str:
    detail = getattr(exc, "detail", None)
    status = getattr(exc, "status_code", None)
    if status is not None:
        return f"{status}{': ' + detail if detail else ''}"
    return str(exc)


def _private_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class LogUploader:
    """Uploads log archives, spools the ones storage does not take yet, and retries them.

    Args:
        storage: the storage client.
        spool_dir: where failed uploads wait (created, mode 0700); ``failed/`` in it keeps the
            archives storage refused for good.
        retry_interval: seconds between background retries (the first backoff step).
        newest_token: returns the newest token seen from a user, used when storage rejects the
            stored one (e.g. it expired).
        max_bytes: file content one archive holds at most (``NRP_LOG_MAX_MB``).
        failed_keep: seconds a refused archive is kept in ``failed/`` (``NRP_LOG_FAILED_KEEP``).
        on_failure: called with ``(simulation id, message)`` when logs are refused for good.
    """

    def __init__(
        self,
        storage: LogStorage,
        spool_dir: Path,
        retry_interval: float = 30.0,
        newest_token: Callable[[str], str | None] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        failed_keep: float = 7 * 24 * 3600.0,
        on_failure: Callable[[int, str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.spool_dir = spool_dir
        self.retry_interval = retry_interval
        self.newest_token = newest_token or (lambda owner: None)
        self.max_bytes = max_bytes
        self.failed_keep = failed_keep
        self.on_failure = on_failure or (lambda sim_id, message: None)
        self.clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def failed_dir(self) -> Path:
        return self.spool_dir / "failed"

    # -- one archive -------------------------------------------------------------------------
    def _upload_to(
        self, zip_path: Path, token: str | None, experiment_id: str, owner: str, sim_id: int
    ) -> str:
        """Upload ``zip_path`` into ``experiment_id``; returns the name storage keeps it under."""
        from hbp_nrp_backend.storage_client import StorageUnauthorized

        try:
            stored = self.storage.upload_logs(token or "", experiment_id, zip_path, sim_id)
        except StorageUnauthorized as exc:
            newer = self.newest_token(owner)
            if exc.status_code == 403 or not newer or newer == token:
                raise
            logger.info("Storage refused the stored token of %s; retrying with a newer one", owner)
            stored = self.storage.upload_logs(newer, experiment_id, zip_path, sim_id)
        return stored if isinstance(stored, str) else zip_path.name

    def _upload_to_own_space(self, zip_path: Path, token: str | None, owner: str, sim_id: int) -> str:
        """Upload into the owner's ``nrp-logs-<owner>`` experiment, created when missing.

        Returns:
            ``<experiment>/<stored name>``.

        Raises:
            PermanentUploadError: that experiment exists and belongs to someone else.
            StorageError: storage failed (permanent or transient, see :func:`is_permanent`).
        """
        from hbp_nrp_backend.storage_client import StorageError

        name = own_logs_experiment(owner)
        listing = self.storage.list_experiments(token or "", None, name=name)
        entry = (
            next(
                (item for item in listing if isinstance(item, dict) and item.get("name") == name),
                None,
            )
            if isinstance(listing, list)
            else None
        )
        if entry is None:
            try:
                self.storage.create_experiment(token or "", name)
            except StorageError as exc:
                if exc.status_code == 409:  # someone else's, invisible to the owner
                    raise PermanentUploadError(f"experiment {name} belongs to another user") from exc
                raise
        elif not entry.get("owned"):
            raise PermanentUploadError(f"experiment {name} belongs to another user")
        return f"{name}/{self._upload_to(zip_path, token, name, owner, sim_id)}"

    def _deliver(self, zip_path: Path, token: str | None, experiment_id: str, owner: str, sim_id: int) -> str:
        """Upload into the experiment or, when it refuses for good, the owner's own space.

        Returns:
            ``<experiment>/<stored name>``.

        Raises:
            Exception: the upload failed; :func:`is_permanent` tells whether a retry may help.
        """
        try:
            return f"{experiment_id}/{self._upload_to(zip_path, token, experiment_id, owner, sim_id)}"
        except Exception as exc:
            if not is_permanent(exc):
                raise
            logger.info("Storage refused the logs of simulation %s in %s (%s)", sim_id, experiment_id, exc)
            first = exc
        try:
            return self._upload_to_own_space(zip_path, token, owner, sim_id)
        except Exception as exc:
            if not is_permanent(exc):
                raise
            raise PermanentUploadError(
                f"storage refused them in {experiment_id} ({_reason(first)}) and in "
                f"{own_logs_experiment(owner)} ({_reason(exc)})"
            ) from exc

    def archive(
        self, sim_dir: Path, sim_id: int, config_name: str, experiment_id: str, owner: str, token: str | None
    ) -> str:
        """Zip and upload the logs of ``sim_dir``; spool or keep the zip if the upload fails. Never raises.

        Returns:
            ``"uploaded"``, ``"spooled"`` (retried), ``"kept"`` (refused for good, reported through
            ``on_failure``), ``"empty"`` (no logs) or ``"lost"`` (could not even spool).
        """
        work = Path(tempfile.mkdtemp(prefix=f"nrp-logs-{sim_id}-"))
        try:
            try:
                zip_path = build_log_zip(sim_dir, sim_id, config_name, work, self.max_bytes)
            except OSError:
                logger.exception("Could not zip the logs of simulation %s", sim_id)
                return "lost"
            if zip_path is None:
                return "empty"
            try:
                stored = self.deliver(zip_path, token, experiment_id, owner, sim_id)
                folder, _, name = stored.partition("/")
                events.logs_uploaded(sim_id, folder, name)
                return "uploaded"
            except Exception as exc:
                return self.settle(zip_path, sim_id, experiment_id, owner, token, exc)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def deliver(self, zip_path: Path, token: str | None, experiment_id: str, owner: str, sim_id: int) -> str:
        """Upload ``zip_path`` once: into the experiment or, refused for good, the owner's own space.

        Returns:
            ``<experiment>/<stored name>``.

        Raises:
            Exception: the upload failed; :func:`is_permanent` tells whether a retry may help.
        """
        return self._deliver(zip_path, token, experiment_id, owner, sim_id)

    def settle(
        self,
        zip_path: Path,
        sim_id: int,
        experiment_id: str,
        owner: str,
        token: str | None,
        reason: BaseException,
    ) -> str:
        """An upload of ``zip_path`` failed with ``reason``: keep it (refused for good) or spool it.

        Returns:
            ``"kept"``, ``"spooled"`` or ``"lost"`` (could not even spool).
        """
        try:
            if is_permanent(reason):
                self.keep(zip_path, sim_id, reason)
                return "kept"
            spooled = self.spool(zip_path, experiment_id, owner, token, sim_id)
            events.logs_spooled(sim_id, spooled, reason, self.retry_interval)
            return "spooled"
        except OSError:
            logger.exception("Could not spool the logs of simulation %s (upload: %s)", sim_id, reason)
            return "lost"

    def keep(self, zip_path: Path, sim_id: int, reason: BaseException) -> Path:
        """Move a refused archive to ``failed/`` until ``failed_keep`` has passed; report it."""
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.spool_dir, 0o700)
        target = self.failed_dir / zip_path.name
        shutil.move(str(zip_path), target)
        os.chmod(target, 0o600)
        until = self.clock() + self.failed_keep
        _private_write(
            target.with_name(target.name + ".json"), json.dumps({"simulationID": sim_id, "keepUntil": until})
        )
        message = (
            f"The logs could not be stored: {_reason(reason)}. The REST server keeps them as "
            f"{target.name} until {iso_utc(until, timespec='seconds')}; ask its administrator."
        )
        events.logs_refused(sim_id, target, reason)
        try:
            self.on_failure(sim_id, message)
        except Exception:
            logger.exception("Reporting the refused logs of simulation %s failed", sim_id)
        return target

    def spool(self, zip_path: Path, experiment_id: str, owner: str, token: str | None, sim_id: int) -> Path:
        """Move ``zip_path`` to the spool with its sidecar; return the spooled path."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.spool_dir, 0o700)
        target = self.spool_dir / zip_path.name
        shutil.move(str(zip_path), target)
        os.chmod(target, 0o600)
        sidecar = {
            "experimentID": experiment_id,
            "owner": owner,
            "token": token,
            "simulationID": sim_id,
            "attempts": 0,
            "nextTry": self.clock() + self.retry_interval,
        }
        _private_write(target.with_name(target.name + ".json"), json.dumps(sidecar))
        return target

    def spooled(self) -> list[Path]:
        """The spooled archives waiting for a retry."""
        if not self.spool_dir.is_dir():
            return []
        return sorted(p for p in self.spool_dir.glob("*.zip") if p.with_name(p.name + ".json").exists())

    def retry_spooled(self, force: bool = False) -> int:
        """Try every spooled archive whose backoff has passed (all with ``force``); return how many
        were uploaded. One storage refuses for good is moved to ``failed/`` and reported."""
        done = 0
        with self._lock:
            for zip_path in self.spooled():
                sidecar = zip_path.with_name(zip_path.name + ".json")
                try:
                    meta = json.loads(sidecar.read_text())
                except (OSError, ValueError):
                    continue
                if not force and float(meta.get("nextTry", 0)) > self.clock():
                    continue
                sim_id = int(meta.get("simulationID", 0))
                try:
                    stored = self._deliver(
                        zip_path, meta.get("token"), meta["experimentID"], meta.get("owner", ""), sim_id
                    )
                except Exception as exc:
                    if is_permanent(exc):
                        sidecar.unlink(missing_ok=True)
                        self.keep(zip_path, sim_id, exc)
                        continue
                    attempts = int(meta.get("attempts", 0)) + 1
                    wait = self.retry_interval * min(2**attempts, MAX_BACKOFF_FACTOR)
                    meta.update(attempts=attempts, nextTry=self.clock() + wait)
                    _private_write(sidecar, json.dumps(meta))
                    logger.info(
                        "Spooled %s still not uploaded (%s); next try in %g s", zip_path.name, exc, wait
                    )
                    continue
                zip_path.unlink(missing_ok=True)
                sidecar.unlink(missing_ok=True)
                folder, _, name = stored.partition("/")
                events.logs_uploaded(sim_id, folder, name, spooled=True)
                done += 1
        return done

    def purge_failed(self) -> int:
        """Delete the refused archives whose keeping time has passed; return how many."""
        removed = 0
        if not self.failed_dir.is_dir():
            return 0
        for sidecar in self.failed_dir.glob("*.zip.json"):
            try:
                until = float(json.loads(sidecar.read_text()).get("keepUntil", 0))
            except (OSError, ValueError):
                continue
            if until <= self.clock():
                sidecar.with_name(sidecar.name[: -len(".json")]).unlink(missing_ok=True)
                sidecar.unlink(missing_ok=True)
                removed += 1
        return removed

    # -- background retries ------------------------------------------------------------------
    def start(self) -> None:
        """Retry the spool now and then every ``retry_interval`` seconds, in a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="LogSpoolRetry", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                self.retry_spooled(force=first)  # at start, everything once
                self.purge_failed()
            except Exception:
                logger.exception("Retrying spooled logs failed")
            first = False
            self._stop.wait(self.retry_interval)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
