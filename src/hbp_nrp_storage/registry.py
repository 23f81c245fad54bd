"""The backend registry: which REST servers exist, which answer, what they run (the NRP proxy's servers map).

Servers come from ``NRP_BACKENDS`` (``[id=]url`` entries, comma-separated) and from JSON servers
files (``NRP_BACKENDS_FILE``, ``nrp storage --backends-file``; ``nrp up`` writes one for its own REST
server). A file is either the NRP proxy's ``config.json`` (its ``servers`` key) or that map alone::

    {"servers": {"local": {"internalIp": "http://127.0.0.1:8090",
                           "nrp-services": "http://localhost:8090",
                           "serverJobLocation": "local", "maxSimulations": 8}}}

Files are re-read when they change. Every ``interval`` seconds each server's ``GET /simulation`` is
polled (in parallel, ``timeout`` each) with the service user's token; a REST server accepts that user
as an admin, so it lists every simulation. A server that fails or answers anything but a JSON array
is *down*; one running fewer unfinished simulations than its ``maxSimulations`` (default 1, the
original's one-simulation-per-backend rule) is *available*.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

log = logging.getLogger(__name__)

JOINABLE_STATES = frozenset({"created", "paused", "started", "completed"})
FINAL_STATES = frozenset({"stopped", "failed"})
MAX_ANSWER_BYTES = 16 * 1024 * 1024
MAX_SERVERS = 64
MAX_ID_LENGTH = 128


class RegistryError(ValueError):
    """A servers entry or file cannot be used; the message names it."""


@dataclass(frozen=True)
class ServerEntry:
    """One REST server: ``internal`` is polled, ``public`` (``nrp-services``) is what browsers call."""

    id: str
    internal: str
    public: str
    max_simulations: int = 1
    extra: tuple[tuple[str, Any], ...] = ()

    def to_json(self, internal: bool = False) -> dict[str, Any]:
        entry: dict[str, Any] = dict(self.extra)
        entry.update({"id": self.id, "nrp-services": self.public, "maxSimulations": self.max_simulations})
        entry.setdefault("serverJobLocation", "local")
        if internal:
            entry["internalIp"] = self.internal
        return entry


def _check_url(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > 2048:
        raise RegistryError(f"{what} must be an http(s) URL")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RegistryError(f"{what} must be an http(s) URL, got {value!r}")
    return value.strip().rstrip("/")


def _check_id(value: str, what: str) -> str:
    if not value or len(value) > MAX_ID_LENGTH or "/" in value or not value.isprintable():
        raise RegistryError(f"{what}: invalid server id {value!r}")
    return value


def parse_backends_env(value: str) -> list[ServerEntry]:
    """``NRP_BACKENDS``: comma-separated ``[id=]url`` entries (the id defaults to ``host:port``).

    Raises:
        RegistryError: an entry is not a URL; the message names it.
    """
    entries = []
    for raw in value.split(","):
        raw = raw.strip()
        if not raw:
            continue
        name, sep, url = raw.partition("=")
        if not sep or "://" in name:
            name, url = "", raw
        url = _check_url(url, f"NRP_BACKENDS entry {raw!r}")
        name = _check_id(name.strip() or urlsplit(url).netloc, "NRP_BACKENDS")
        entries.append(ServerEntry(name, url, url))
    return entries


def parse_servers(document: Any, source: str) -> list[ServerEntry]:
    """Server entries of a proxy-style ``config.json`` or of a bare servers map.

    Raises:
        RegistryError: the document or an entry is unusable; the message names the source and key.
    """
    if isinstance(document, dict) and isinstance(document.get("servers"), dict):
        document = document["servers"]
    if not isinstance(document, dict):
        raise RegistryError(f"{source}: expected an object of servers")
    entries = []
    for key, value in document.items():
        name = _check_id(str(key), source)
        if not isinstance(value, dict):
            raise RegistryError(f"{source}: server {name!r} must be an object")
        public_raw = value.get("nrp-services") or value.get("internalIp")
        public = _check_url(public_raw, f"{source}: server {name!r} nrp-services")
        internal = _check_url(value.get("internalIp") or public, f"{source}: server {name!r} internalIp")
        maximum = value.get("maxSimulations", 1)
        if not isinstance(maximum, int) or isinstance(maximum, bool) or not 1 <= maximum <= 10000:
            raise RegistryError(f"{source}: server {name!r} maxSimulations must be an integer >= 1")
        extra = tuple(
            (k, v)
            for k, v in value.items()
            if k not in ("internalIp", "nrp-services", "maxSimulations", "id") and isinstance(k, str)
        )
        entries.append(ServerEntry(name, internal, public, maximum, extra))
    return entries


@dataclass
class ServerStatus:
    """What the last poll of one server found."""

    up: bool = False
    simulations: list[dict[str, Any]] = field(default_factory=list)
    error: str = "not polled yet"


class BackendRegistry:
    """The servers, their last poll, and the polling thread.

    Args:
        env_entries: servers from ``NRP_BACKENDS``.
        files: servers files, re-read when they change (a missing file is empty).
        token: returns the Bearer token sent to the REST servers (called on each poll round).
        interval: seconds between poll rounds.
        timeout: seconds per request.
    """

    def __init__(
        self,
        env_entries: list[ServerEntry],
        files: list[Path],
        token: Callable[[], str],
        interval: float = 3.0,
        timeout: float = 5.0,
    ) -> None:
        self.env_entries = env_entries
        self.files = files
        self.token = token
        self.interval = interval
        self.timeout = timeout
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._entries: dict[str, ServerEntry] = {}
        self._status: dict[str, ServerStatus] = {}
        self._file_keys: dict[Path, tuple[int, int] | None] = {}
        self._file_entries: dict[Path, list[ServerEntry]] = {}
        self._stop = threading.Event()
        self._polled = threading.Event()
        self._thread: threading.Thread | None = None
        self._reload()

    # configuration

    def _reload(self) -> None:
        """Re-read changed files and rebuild the entries (environment first, files override)."""
        with self._reload_lock:
            self._reload_locked()

    def _reload_locked(self) -> None:
        for path in self.files:
            try:
                st = path.stat()
                key: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
            except OSError:
                key = None
            if path in self._file_keys and self._file_keys[path] == key:
                continue
            self._file_keys[path] = key
            entries: list[ServerEntry] = []
            if key is not None:
                try:
                    entries = parse_servers(json.loads(path.read_bytes()), str(path))
                except (OSError, ValueError) as exc:  # RegistryError is a ValueError
                    log.warning("servers file ignored: %s", exc)
            self._file_entries[path] = entries
        merged: dict[str, ServerEntry] = {}
        for entry in self.env_entries + [e for path in self.files for e in self._file_entries.get(path, [])]:
            if len(merged) >= MAX_SERVERS and entry.id not in merged:
                log.warning("more than %d servers; %s ignored", MAX_SERVERS, entry.id)
                continue
            merged[entry.id] = entry
        with self._lock:
            self._entries = merged
            self._status = {name: self._status.get(name, ServerStatus()) for name in merged}

    # polling

    def start(self) -> None:
        """Start the polling thread (a no-op when it runs)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="backend-registry", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 1)

    def _run(self) -> None:
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="registry-poll") as pool:
            while not self._stop.is_set():
                try:
                    self.poll_once(pool)
                except Exception:  # noqa: BLE001 - the thread must keep polling
                    log.exception("backend poll round failed")
                self._stop.wait(self.interval)

    def poll_once(self, pool: ThreadPoolExecutor | None = None) -> None:
        """One round: reload the files, poll every server, store what each answered."""
        self._reload()
        with self._lock:
            entries = list(self._entries.values())
        if entries:
            token = self.token()
            if pool is None:
                results = [self._poll(entry, token) for entry in entries]
            else:
                results = list(pool.map(lambda entry: self._poll(entry, token), entries))
            with self._lock:
                for entry, status in zip(entries, results, strict=True):
                    if entry.id in self._status:
                        self._status[entry.id] = status
        self._polled.set()

    def _poll(self, entry: ServerEntry, token: str) -> ServerStatus:
        try:
            # a fresh connection per poll (one every few seconds): no session shared between threads
            with requests.get(
                f"{entry.internal}/simulation",
                headers={"Authorization": f"Bearer {token}"},
                timeout=self.timeout,
                stream=True,
            ) as response:
                if response.status_code != 200:
                    return ServerStatus(error=f"GET /simulation answered {response.status_code}")
                body = response.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            return ServerStatus(error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - urllib3 errors while reading the body
            return ServerStatus(error=f"{type(exc).__name__}: {exc}")
        if len(body) > MAX_ANSWER_BYTES:
            return ServerStatus(error="GET /simulation answered more than 16 MiB")
        try:
            simulations = json.loads(body)
        except ValueError:
            return ServerStatus(error="GET /simulation did not answer JSON")
        if not isinstance(simulations, list) or not all(isinstance(s, dict) for s in simulations):
            return ServerStatus(error="GET /simulation did not answer an array of simulations")
        return ServerStatus(up=True, simulations=simulations, error="")

    def wait_polled(self, timeout: float) -> bool:
        """Wait for the first poll round (tests and start-up)."""
        return self._polled.wait(timeout)

    # queries

    def server(self, name: str) -> ServerEntry | None:
        self._reload()  # a stat per file: an entry added to a servers file is known at once
        with self._lock:
            return self._entries.get(name)

    def available(self) -> list[dict[str, Any]]:
        """Entries of servers that answered and have room for another simulation, shuffled."""
        with self._lock:
            found = []
            for name, entry in self._entries.items():
                status = self._status.get(name)
                if status is None or not status.up:
                    continue
                active = sum(1 for s in status.simulations if s.get("state") not in FINAL_STATES)
                if active < entry.max_simulations:
                    found.append(entry.to_json())
        random.shuffle(found)
        return found

    def down(self) -> list[dict[str, Any]]:
        """Entries (with ``internalIp``) of servers whose last poll failed, with the reason."""
        with self._lock:
            return [
                {**entry.to_json(internal=True), "error": self._status[name].error}
                for name, entry in self._entries.items()
                if name in self._status and not self._status[name].up
            ]

    def joinable(self) -> dict[str, list[dict[str, Any]]]:
        """Per experiment id, the running simulations as ``{"server", "runningSimulation"}``."""
        found: dict[str, list[dict[str, Any]]] = {}
        with self._lock:
            for name, status in self._status.items():
                if not status.up:
                    continue
                for simulation in status.simulations:
                    experiment = simulation.get("experimentID")
                    if isinstance(experiment, str) and simulation.get("state") in JOINABLE_STATES:
                        found.setdefault(experiment, []).append(
                            {"server": name, "runningSimulation": simulation}
                        )
        return found
