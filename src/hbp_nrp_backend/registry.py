"""The persistent simulation registry: one SQLite database under ``NRP_BACKEND_STATE_DIR``.

The registry keeps every simulation the server ever created, so simulation IDs never repeat,
across restarts too, and a restarted server can find the simulations its predecessor left running
(it fails them, stops their Simulation Servers and archives their logs when it starts).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hbp_nrp_commons.timestamps import iso_utc

logger = logging.getLogger(__name__)

FINAL_STATES = frozenset({"stopped", "failed"})
RUNNING_STATES = frozenset({"created", "paused", "started", "completed"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS simulations (
    id INTEGER PRIMARY KEY,
    experiment_id TEXT NOT NULL,
    experiment_configuration TEXT NOT NULL,
    main_script TEXT NOT NULL,
    owner TEXT NOT NULL,
    creation_date TEXT NOT NULL,
    ctx_id TEXT,
    state TEXT NOT NULL,
    ready INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    sim_dir TEXT,
    pid INTEGER,
    token TEXT,
    node TEXT
);
"""

_COLUMNS = (
    "id",
    "experiment_id",
    "experiment_configuration",
    "main_script",
    "owner",
    "creation_date",
    "ctx_id",
    "state",
    "ready",
    "error",
    "sim_dir",
    "pid",
    "token",
    "node",
)
#: Columns added after the first release: (name, SQL type), added to older databases when opened.
_ADDED_COLUMNS = (("node", "TEXT"),)


def creation_timestamp() -> str:
    """Now, ISO 8601 in UTC with microseconds: ``2026-12-05T15:52:28.123456Z``."""
    return iso_utc()


@dataclass
class SimulationRecord:
    """What the registry stores about one simulation.

    ``node`` says where it runs (executor, node id, host; a Ray simulation's actor too).
    ``token`` (the creation token, needed to upload logs) and ``pid``/``sim_dir`` (needed to
    reconcile after a crash) are internal and never part of the REST representation.
    """

    id: int
    experiment_id: str
    experiment_configuration: str = "simulation_config.json"
    main_script: str = "main_script.py"
    owner: str = "default-owner"
    creation_date: str = field(default_factory=creation_timestamp)
    ctx_id: str | None = None
    state: str = "created"
    ready: bool = False
    error: dict[str, Any] | None = None
    sim_dir: str | None = None
    pid: int | None = None
    token: str | None = None
    node: dict[str, Any] | None = None

    def representation(self, mqtt_prefix: str) -> dict[str, Any]:
        """The simulation as ``GET /simulation`` and ``GET /simulation/<id>`` return it."""
        return {
            "state": self.state,
            "simulationID": self.id,
            "experimentConfiguration": self.experiment_configuration,
            "mainScript": self.main_script,
            "owner": self.owner,
            "creationDate": self.creation_date,
            "experimentID": self.experiment_id,
            "ctxId": self.ctx_id,
            "MQTTPrefix": mqtt_prefix,
            "ready": self.ready,
            "error": self.error,
            "node": self.public_node(),
        }

    def public_node(self) -> dict[str, Any] | None:
        """Where it runs: ``executor`` (``local`` or ``ray``), ``id`` (the Ray node id) and ``host``."""
        if self.node is None:
            return None
        return {key: self.node.get(key) for key in ("executor", "id", "host")}

    def _row(self) -> tuple[Any, ...]:
        values = dict(self.__dict__)
        values["ready"] = int(self.ready)
        values["error"] = json.dumps(self.error) if self.error is not None else None
        values["node"] = json.dumps(self.node) if self.node is not None else None
        return tuple(values[name] for name in _COLUMNS)

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> SimulationRecord:
        values = {name: row[name] for name in _COLUMNS}
        values["ready"] = bool(values["ready"])
        values["error"] = json.loads(values["error"]) if values["error"] else None
        values["node"] = json.loads(values["node"]) if values["node"] else None
        return cls(**values)


class Registry:
    """The SQLite database of simulations; every method is thread-safe and short.

    Args:
        state_dir: folder of the database file ``registry.sqlite3`` (created, mode 0700).
    """

    FILE_NAME = "registry.sqlite3"

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(state_dir, 0o700)
        except OSError:
            logger.warning("Could not restrict the permissions of %s", state_dir)
        self.path = state_dir / self.FILE_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # the file holds creation tokens
        os.close(fd)
        self._lock = threading.Lock()
        self._closed = False
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            present = {row["name"] for row in self._db.execute("PRAGMA table_info(simulations)")}
            for name, kind in _ADDED_COLUMNS:
                if name not in present:  # a database of an older release
                    self._db.execute(f"ALTER TABLE simulations ADD COLUMN {name} {kind}")

    def allocate_id(self) -> int:
        """Return a simulation ID never returned before by this database (0, 1, 2, ...)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT value FROM counters WHERE name = 'next_id'").fetchone()
                highest = self._db.execute("SELECT MAX(id) FROM simulations").fetchone()[0]
                next_id = row[0] if row else 0
                if highest is not None:
                    next_id = max(next_id, highest + 1)
                self._db.execute(
                    "INSERT INTO counters (name, value) VALUES ('next_id', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    (next_id + 1,),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return next_id

    def save(self, record: SimulationRecord) -> None:
        """Insert or replace ``record``."""
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._lock:
            if self._closed:
                logger.warning("Registry closed; simulation %s not saved", record.id)
                return
            self._db.execute(
                f"INSERT OR REPLACE INTO simulations ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                record._row(),
            )

    def load_all(self) -> list[SimulationRecord]:
        """Every stored simulation, in ID order."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM simulations ORDER BY id").fetchall()
        return [SimulationRecord._from_row(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()
