"""API keys for the proxy, stored hashed in SQLite or PostgreSQL (`--keys-db` takes a file
path or a `postgresql://` URL; replicas that share a PostgreSQL share their keys).

A key is shown once, when it is made; only its SHA-256 is kept (keys are 256 random bits,
so a fast hash is enough: there is nothing to brute-force). Each key has a unique name,
which is what the audit log records as `key_id`. A revoked key keeps its row, so its name is
never reused and old audit rows stay unambiguous. `verify` reads the database every time,
so `keys add` and `keys revoke` take effect on running servers at once; with shared state
(`--state redis://`) replicas cache lookups briefly and learn of revocations through Redis
(`oyster.serve.state`).

Scopes widen what a key may see; a key with none gets replies only:
- `inspect`: the decision behind each completion (the `oyster` object, level and outcome
  headers), `POST /v1/decide` and the review console;
- `admin`: `GET /metrics`, the detailed `GET /healthz` and the review console.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Literal, get_args

import anyio
from pydantic import BaseModel, ConfigDict, Field

from oyster.errors import InputError, OysterError
from oyster.serve.storage import (
    Conflict,
    Database,
    Location,
    Migration,
    StorageError,
    open_migrated,
    parse_location,
)

KEY_PREFIX = "oys-"
Scope = Literal["inspect", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

COMPONENT = "keys"
MIGRATIONS = (
    Migration(1, "the api_keys table", """
        CREATE TABLE IF NOT EXISTS api_keys (
            name    TEXT PRIMARY KEY,
            hash    TEXT NOT NULL UNIQUE,
            created REAL NOT NULL,
            revoked REAL)""", """
        CREATE TABLE IF NOT EXISTS api_keys (
            name    TEXT PRIMARY KEY,
            hash    TEXT NOT NULL UNIQUE,
            created DOUBLE PRECISION NOT NULL,
            revoked DOUBLE PRECISION)"""),
    # what a key may see beyond replies: space-separated scope names ('' for none), so
    # every key made before scopes existed gets replies only
    Migration(2, "scopes per key",
              "ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT ''",
              "ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT ''"),
)


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
    """Hashed API keys in a SQLite file or PostgreSQL, safe to use from several threads.
    The database is opened (and its schema created or migrated) on first use."""

    def __init__(self, location: str | Path | Location, pool_size: int = 4) -> None:
        self.location = (location if isinstance(location, Location)
                         else parse_location(location, "key database"))
        self._pool_size = pool_size
        self._database: Database | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The SQLite file (an error for PostgreSQL)."""
        return self.location.path

    def _db(self) -> Database:
        with self._lock:
            if self._database is None:
                try:
                    self._database = open_migrated(self.location, COMPONENT, MIGRATIONS,
                                                   pool_size=self._pool_size)
                except StorageError as e:
                    raise KeyStoreError(f"key database: {e}") from None
            return self._database

    def _execute(self, sql: str, params: tuple[object, ...] = (), *, read: bool = False
                 ) -> list[tuple[object, ...]]:
        try:
            db = self._db()
            return db.read(sql, params) if read else db.execute(sql, params)
        except Conflict:
            raise
        except StorageError as e:
            raise KeyStoreError(str(e)) from None

    def add(self, name: str, scopes: tuple[str, ...] | list[str] = ()) -> NewApiKey:
        """Make a key called `name` with `scopes`; the returned secret is not kept anywhere."""
        if not _KEY_NAME.fullmatch(name):
            raise InputError(f"key name {name!r}: use 1-64 letters, digits, '-', '_' or '.'")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise InputError(f"unknown scope(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(SCOPES)}")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            self._execute("INSERT INTO api_keys (name, hash, created, scopes) VALUES (?, ?, ?, ?)",
                          (name, hash_key(key), time.time(), " ".join(sorted(set(scopes)))))
        except Conflict:
            raise InputError(f"a key named {name!r} exists already (names are never "
                             "reused, even after revoking)") from None
        return NewApiKey(name=name, key=key)

    def revoke(self, name: str) -> None:
        rows = self._execute("UPDATE api_keys SET revoked = ? WHERE name = ? AND revoked IS NULL"
                             " RETURNING name", (time.time(), name))
        if not rows:
            raise InputError(f"no active key named {name!r} in {self.location}")

    def list(self) -> list[ApiKeyInfo]:
        rows = self._execute("SELECT name, created, revoked, scopes FROM api_keys "
                             "ORDER BY created", read=True)
        return [ApiKeyInfo(name=n, created=c, revoked=r,  # type: ignore[arg-type]
                           scopes=_scopes(str(s)))
                for n, c, r, s in rows]

    def active_count(self) -> int:
        [(n,)] = self._execute("SELECT COUNT(*) FROM api_keys WHERE revoked IS NULL", read=True)
        return int(n)  # type: ignore[call-overload]

    def verify(self, key: str) -> KeyIdentity | None:
        """The identity of the active key `key`, or None."""
        if not key.startswith(KEY_PREFIX):
            return None
        rows = self._execute("SELECT name, scopes FROM api_keys WHERE hash = ? AND "
                             "revoked IS NULL", (hash_key(key),), read=True)
        return (KeyIdentity(name=str(rows[0][0]), scopes=frozenset(_scopes(str(rows[0][1]))))
                if rows else None)

    async def averify(self, key: str) -> KeyIdentity | None:
        """`verify` without blocking the event loop on a network database."""
        if self.location.kind == "sqlite":  # a local file: microseconds
            return self.verify(key)
        return await anyio.to_thread.run_sync(self.verify, key)

    def check(self) -> None:
        """Raise `KeyStoreError` unless the database answers now."""
        self._execute("SELECT 1", read=True)

    def close(self) -> None:
        with self._lock:
            if self._database is not None:
                self._database.close()
                self._database = None


def _scopes(stored: str) -> list[Scope]:
    return [s for s in SCOPES if s in stored.split()]
