"""Users, tokens and experiment records in one SQLite database at the storage root.

Tokens are random 128-bit secrets; only their SHA-256 hashes are stored. A fast hash suffices for
such secrets, and verified tokens are cached in memory so a clone of a few hundred files does not
query the database per request. The command line (``nrp user add|token``) writes the same database
directly, so it works whether the server runs or not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

DB_NAME = ".nrp_storage.sqlite3"

SHARED_OPTIONS = ("Private", "Shared", "Public")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    created REAL NOT NULL,
    expires REAL
);
CREATE TABLE IF NOT EXISTS gdpr (
    user TEXT PRIMARY KEY,
    accepted REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    shared_users TEXT NOT NULL DEFAULT '[]',
    shared_option TEXT NOT NULL DEFAULT 'Private'
);
"""


class UserError(ValueError):
    """A user command cannot be done (unknown or existing user); the message says why."""


@dataclass(frozen=True)
class ExperimentRecord:
    """Ownership and sharing of an experiment folder: owner, shared users, ``shared_option``."""

    name: str
    owner: str
    shared_users: tuple[str, ...] = ()
    shared_option: str = "Private"

    def can_read(self, user: str) -> bool:
        return user == self.owner or user in self.shared_users or self.shared_option == "Public"

    def can_write(self, user: str) -> bool:
        return user == self.owner or user in self.shared_users

    def can_admin(self, user: str) -> bool:
        return user == self.owner


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


#: scrypt cost: 2**15 x 8 x 128 bytes = 32 MiB and a few tenths of a second per hash.
SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P = 15, 8, 1
MAX_PASSWORD_BYTES = 1024


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``: ``scrypt$<log2 n>$<r>$<p>$<salt hex>$<hash hex>``."""
    salt = os.urandom(16)
    digest = _scrypt(password, salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_LOG_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches the ``stored`` hash; a missing or unreadable hash never matches.

    A missing hash still costs one hash computation, so the answer time does not tell whether the
    user exists or has a password.
    """
    try:
        kind, log_n, r, p, salt, digest = (stored or "").split("$")
        if kind != "scrypt":
            raise ValueError(kind)
        params = (int(log_n), int(r), int(p))
        expected = bytes.fromhex(digest)
        salt_bytes = bytes.fromhex(salt)
    except ValueError:
        _scrypt(password, b"\0" * 16, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)
        return False
    return hmac.compare_digest(_scrypt(password, salt_bytes, *params), expected)


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    data = password.encode("utf-8")[:MAX_PASSWORD_BYTES]
    return hashlib.scrypt(data, salt=salt, n=2**log_n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


@dataclass
class UserStore:
    """The metadata database of one storage root.

    Args:
        root: the storage root; the database is the dot-file ``.nrp_storage.sqlite3`` in it.
    """

    root: Path
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _cache: dict[str, tuple[str, float | None]] = field(default_factory=dict, init=False, repr=False)
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(tokens)")}
            if "kind" not in columns:  # databases made before login tokens existed
                conn.execute("ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api'")
            conn.commit()
        finally:
            conn.close()

    @property
    def path(self) -> Path:
        return self.root / DB_NAME

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One connection per thread; each ``with`` block is one transaction (``write``: locked at once)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def check(self) -> None:
        """Raise ``sqlite3.Error`` unless the database can be read (health check)."""
        # a URI filename: "?", "#" and "%" in the root's path must be percent-encoded
        conn = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True, timeout=5)
        try:
            conn.execute("SELECT count(*) FROM users").fetchone()
        finally:
            conn.close()

    # users and tokens

    def user_exists(self, name: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None

    def add_user(self, name: str, ttl: float | None = None) -> str:
        """Create user ``name`` and return a new token for it.

        Raises:
            UserError: the user exists already, or the name is empty.
        """
        if not name or name.strip() != name or "/" in name:
            raise UserError(f"invalid user name {name!r}")
        with self._connect(write=True) as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserError(f"user {name!r} exists already; `nrp user token {name}` issues a new token")
            db.execute("INSERT INTO users (name, created) VALUES (?, ?)", (name, time.time()))
            return self._insert_token(db, name, ttl)

    def issue_token(self, name: str, ttl: float | None = None) -> str:
        """Return a new token for the existing user ``name``; it never expires unless ``ttl`` is given.

        Raises:
            UserError: there is no such user.
        """
        with self._connect(write=True) as db:
            if not db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserError(f"no user {name!r}; `nrp user add {name}` creates it")
            return self._insert_token(db, name, ttl)

    @staticmethod
    def _insert_token(db: sqlite3.Connection, name: str, ttl: float | None, kind: str = "api") -> str:
        token = secrets.token_urlsafe(16)
        now = time.time()
        expires = now + ttl if ttl else None
        db.execute(
            "INSERT INTO tokens (hash, user, created, expires, kind) VALUES (?, ?, ?, ?, ?)",
            (hash_token(token), name, now, expires, kind),
        )
        return token

    def revoke_tokens(self, name: str, kind: str | None = None) -> None:
        """Delete the tokens of ``name`` (only those of ``kind`` if given); effective at once."""
        with self._connect(write=True) as db:
            if kind is None:
                db.execute("DELETE FROM tokens WHERE user = ?", (name,))
            else:
                db.execute("DELETE FROM tokens WHERE user = ? AND kind = ?", (name, kind))
        with self._lock:
            self._cache.clear()

    # passwords and logins

    def set_password(self, name: str, password: str) -> None:
        """Store a new password hash for the existing user ``name`` and end its login sessions.

        Tokens from ``nrp user add|token`` (kind ``api``) stay valid; login tokens are revoked.

        Raises:
            UserError: no such user, or an empty or over-long password.
        """
        if not password:
            raise UserError("the password must not be empty")
        if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
            raise UserError(f"the password must be at most {MAX_PASSWORD_BYTES} bytes")
        hashed = hash_password(password)
        with self._connect(write=True) as db:
            if not db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserError(f"no user {name!r}; `nrp user add {name}` creates it")
            db.execute("UPDATE users SET password_hash = ? WHERE name = ?", (hashed, name))
        self.revoke_tokens(name, kind="login")

    def has_password(self, name: str) -> bool:
        with self._connect() as db:
            row = db.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
        return bool(row and row[0])

    def login(self, name: str, password: str, ttl: float | None) -> str | None:
        """A new login token if ``password`` is ``name``'s, else ``None`` (same cost either way)."""
        with self._connect() as db:
            row = db.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
        if not verify_password(password, row[0] if row else None):
            return None
        with self._connect(write=True) as db:
            if not db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                return None
            return self._insert_token(db, name, ttl, kind="login")

    def service_token(self, name: str) -> str:
        """A fresh token for the service user ``name`` (created if missing); its older tokens end."""
        with self._connect(write=True) as db:
            if not db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                db.execute("INSERT INTO users (name, created) VALUES (?, ?)", (name, time.time()))
            db.execute("DELETE FROM tokens WHERE user = ?", (name,))
            token = self._insert_token(db, name, None, kind="service")
        with self._lock:
            self._cache.clear()
        return token

    # GDPR acceptance (the frontend asks once per user)

    def gdpr_accepted(self, name: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM gdpr WHERE user = ?", (name,)).fetchone() is not None

    def accept_gdpr(self, name: str) -> None:
        with self._connect(write=True) as db:
            db.execute("INSERT OR REPLACE INTO gdpr (user, accepted) VALUES (?, ?)", (name, time.time()))

    def user_for_token(self, token: str) -> str | None:
        """The user name a valid token belongs to, or ``None`` (unknown or expired)."""
        digest = hash_token(token)
        now = time.time()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is None:
            with self._connect() as db:
                row = db.execute("SELECT user, expires FROM tokens WHERE hash = ?", (digest,)).fetchone()
            if row is None:
                return None
            cached = (row[0], row[1])
            with self._lock:
                self._cache[digest] = cached
        user, expires = cached
        if expires is not None and expires <= now:
            with self._lock:
                self._cache.pop(digest, None)
            return None
        return user

    # experiment records

    def get_experiment(self, name: str) -> ExperimentRecord | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT name, owner, shared_users, shared_option FROM experiments WHERE name = ?", (name,)
            ).fetchone()
        return _record(row) if row else None

    def experiments(self) -> list[ExperimentRecord]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT name, owner, shared_users, shared_option FROM experiments ORDER BY name"
            ).fetchall()
        return [_record(row) for row in rows]

    def add_experiment(self, name: str, owner: str, shared_option: str = "Private") -> ExperimentRecord:
        """Register folder ``name`` to ``owner`` (replacing a stale record of a vanished folder)."""
        if shared_option not in SHARED_OPTIONS:
            raise ValueError(f"shared_option must be one of {SHARED_OPTIONS}")
        with self._connect(write=True) as db:
            db.execute(
                "INSERT OR REPLACE INTO experiments (name, owner, shared_users, shared_option) "
                "VALUES (?, ?, '[]', ?)",
                (name, owner, shared_option),
            )
        return ExperimentRecord(name, owner, (), shared_option)

    def remove_experiment(self, name: str) -> None:
        with self._connect(write=True) as db:
            db.execute("DELETE FROM experiments WHERE name = ?", (name,))


def _record(row: tuple[str, str, str, str]) -> ExperimentRecord:
    return ExperimentRecord(row[0], row[1], tuple(json.loads(row[2] or "[]")), row[3])
