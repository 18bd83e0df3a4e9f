"""API keys for the proxy, stored hashed in SQLite.

A key is shown once, when it is made; only its SHA-256 is kept (keys are 256 random bits,
so a fast hash is enough: there is nothing to brute-force). Each key has a unique name,
which is what the audit log records as `key_id`. A revoked key keeps its row, so its name is
never reused and old audit rows stay unambiguous. Lookups read the database on every
request, so `keys add` and `keys revoke` take effect on a running server at once.

Scopes widen what a key may see; a key with none gets replies only:
- `inspect`: the decision behind each completion (the `oyster` object, level and outcome
  headers) and `POST /v1/decide`;
- `admin`: `GET /metrics` and the detailed `GET /healthz`.

The store's whole interface is `add`, `revoke`, `list`, `active_count`, `verify` and
`close`, so another database can back it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from oyster.errors import InputError, OysterError

KEY_PREFIX = "oys-"
Scope = Literal["inspect", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    name    TEXT PRIMARY KEY,
    hash    TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    revoked REAL,
    scopes  TEXT NOT NULL DEFAULT ''
);
"""


class KeyStoreError(OysterError):
    """The key database cannot be opened or changed."""


class ApiKeyInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    created: float
    revoked: float | None = None
    scopes: list[Scope] = Field(default_factory=list)


class KeyIdentity(BaseModel):
    """Who a verified key belongs to and what it may see."""

    model_config = ConfigDict(frozen=True)

    name: str
    scopes: frozenset[Scope] = frozenset()


class NewApiKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    key: str = Field(description="the secret; shown once, never stored")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """Hashed API keys in a SQLite file, safe to use from several threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                columns = {row[1] for row in conn.execute("PRAGMA table_info(api_keys)")}
                if "scopes" not in columns:  # a database made before scopes existed
                    conn.execute("ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL "
                                 "DEFAULT ''")
            except (OSError, sqlite3.Error) as e:
                raise KeyStoreError(f"{self.path}: cannot open the key database: {e}") from e
            self._conn = conn
        return self._conn

    def add(self, name: str, scopes: tuple[str, ...] | list[str] = ()) -> NewApiKey:
        """Make a key called `name` with `scopes`; the returned secret is not kept anywhere."""
        if not _KEY_NAME.fullmatch(name):
            raise InputError(f"key name {name!r}: use 1-64 letters, digits, '-', '_' or '.'")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise InputError(f"unknown scope(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(SCOPES)}")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            try:
                self._db().execute(
                    "INSERT INTO api_keys (name, hash, created, scopes) VALUES (?, ?, ?, ?)",
                    (name, hash_key(key), time.time(), " ".join(sorted(set(scopes)))))
            except sqlite3.IntegrityError:
                raise InputError(f"a key named {name!r} exists already (names are never "
                                 "reused, even after revoking)") from None
        return NewApiKey(name=name, key=key)

    def revoke(self, name: str) -> None:
        with self._lock:
            cur = self._db().execute(
                "UPDATE api_keys SET revoked = ? WHERE name = ? AND revoked IS NULL",
                (time.time(), name))
        if cur.rowcount == 0:
            raise InputError(f"no active key named {name!r} in {self.path}")

    def list(self) -> list[ApiKeyInfo]:
        with self._lock:
            rows = self._db().execute(
                "SELECT name, created, revoked, scopes FROM api_keys ORDER BY created").fetchall()
        return [ApiKeyInfo(name=n, created=c, revoked=r, scopes=_scopes(s))
                for n, c, r, s in rows]

    def active_count(self) -> int:
        with self._lock:
            (n,) = self._db().execute(
                "SELECT COUNT(*) FROM api_keys WHERE revoked IS NULL").fetchone()
        return int(n)

    def verify(self, key: str) -> KeyIdentity | None:
        """The identity of the active key `key`, or None."""
        if not key.startswith(KEY_PREFIX):
            return None
        with self._lock:
            row = self._db().execute(
                "SELECT name, scopes FROM api_keys WHERE hash = ? AND revoked IS NULL",
                (hash_key(key),)).fetchone()
        return KeyIdentity(name=str(row[0]), scopes=frozenset(_scopes(row[1]))) if row else None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _scopes(stored: str) -> list[Scope]:
    return [s for s in SCOPES if s in stored.split()]
