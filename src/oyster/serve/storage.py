"""Where the proxy keeps durable records: a SQLite file (one machine) or PostgreSQL (replicas
that share one database), named by one location string.

    parse_location("oyster-audit.db")                  # SQLite file
    parse_location("postgresql://oyster@db:5432/oyster")  # PostgreSQL (psycopg 3, pooled)

Each component (the audit log, the key store) owns its tables and a list of numbered
migrations. `migrate` brings a database up to the newest version on start, under a lock, so
several replicas starting at once apply each migration exactly once; a database written by
a newer Oyster (a higher version than this one knows) is refused rather than misread.
Versions live in the `oyster_schema` table, one row per component.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from oyster.errors import InputError, OysterError

Kind = Literal["sqlite", "postgresql"]
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


class StorageError(OysterError):
    """A database cannot be reached, opened, migrated or written."""


class Conflict(StorageError):
    """A write broke a uniqueness rule (e.g. a key name that exists already)."""


class ConnectionLost(StorageError):
    """The connection failed (the server restarted, the network dropped): the statement may
    or may not have taken effect; a fresh connection may succeed."""


@dataclass(frozen=True)
class Location:
    """A SQLite file or a PostgreSQL URL. `str()` never shows a password."""

    kind: Kind
    target: str  # the file path, or the full URL

    @property
    def path(self) -> Path:
        if self.kind != "sqlite":
            raise StorageError(f"{self}: not a SQLite file")
        return Path(self.target)

    def __str__(self) -> str:
        return self.target if self.kind == "sqlite" else redact(self.target)


def redact(url: str) -> str:
    """`url` with its password replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def parse_location(value: str | Path, what: str = "database") -> Location:
    """A SQLite path, or a `postgresql://` (`postgres://`) URL. Any other URL scheme is an
    error, never a file name: `mysql://h/db` must not quietly become a folder `mysql:`."""
    text = str(value)
    if not text.strip():
        raise InputError(f"{what}: empty location; give a SQLite file or a postgresql:// URL")
    m = _URL.match(text)
    if m and (text[m.end():].startswith("//") or m.group(1).lower() in _POSTGRES_SCHEMES):
        scheme = m.group(1).lower()
        if scheme not in _POSTGRES_SCHEMES:
            raise InputError(f"{what}: {redact(text)}: unsupported scheme {scheme!r}; give a "
                             "SQLite file path or a postgresql://USER@HOST:PORT/DB URL")
        if not text[m.end():].startswith("//"):
            raise InputError(f"{what}: {text!r}: a PostgreSQL URL looks like "
                             "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB")
        return Location("postgresql", text)
    return Location("sqlite", text)


class Transaction(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


class Database:
    """One database, used from any thread. SQL is written with `?` placeholders; PostgreSQL
    gets them as `%s`. `execute` runs one statement in its own transaction; `transaction()`
    groups several. Integrity violations raise `Conflict`, everything else `StorageError`."""

    kind: Kind

    def __init__(self, location: Location) -> None:
        self.location = location

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.transaction() as tx:
            return tx.execute(sql, params)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """`execute` for a statement that changes nothing: retried once on a lost
        connection (after a database restart, the pool's old connections are dead)."""
        try:
            return self.execute(sql, params)
        except ConnectionLost:
            return self.execute(sql, params)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        raise NotImplementedError
        yield

    def check(self) -> None:
        """Raise `StorageError` unless the database answers now."""
        self.execute("SELECT 1")

    def close(self) -> None:
        raise NotImplementedError


def open_database(location: Location, *, pool_size: int = 4, busy_timeout_s: float = 5.0,
                  synchronous: str = "NORMAL", connect_timeout_s: float = 10.0) -> Database:
    """Connect (creating a SQLite file and its folder if needed); raise `StorageError` if
    the database cannot be reached within `connect_timeout_s`."""
    if location.kind == "sqlite":
        return SqliteDatabase(location, busy_timeout_s, synchronous)
    return PostgresDatabase(location, pool_size, connect_timeout_s)


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, tuple(params)).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)


class SqliteDatabase(Database):
    """One connection in WAL mode, serialised by a lock (SQLite has one writer anyway)."""

    kind: Kind = "sqlite"

    def __init__(self, location: Location, busy_timeout_s: float = 5.0,
                 synchronous: str = "NORMAL") -> None:
        super().__init__(location)
        path = location.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_s,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
        except (OSError, sqlite3.Error) as e:
            raise StorageError(f"{location}: cannot open: {e}") from e
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # autocommit: a read takes no write lock
        with self._lock:
            conn = self._open()
            try:
                return conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.IntegrityError as e:
                raise Conflict(f"{self.location}: {e}") from None
            except sqlite3.Error as e:
                raise StorageError(f"{self.location}: {e}") from e

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError(f"{self.location}: closed")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._lock:
            conn = self._open()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield _SqliteTx(conn)
                conn.execute("COMMIT")
            except sqlite3.IntegrityError as e:
                _rollback(conn)
                raise Conflict(f"{self.location}: {e}") from None
            except sqlite3.Error as e:
                _rollback(conn)
                raise StorageError(f"{self.location}: {e}") from e
            except BaseException:
                _rollback(conn)
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class _PostgresTx:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # without parameters the text goes as it is (a `?` may be a JSONB operator)
        cur = (self.conn.execute(sql.replace("?", "%s"), tuple(params)) if params
               else self.conn.execute(sql))
        return cur.fetchall() if cur.description is not None else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)


class PostgresDatabase(Database):
    """A psycopg 3 connection pool of autocommit connections: one round trip for a single
    statement (`transaction()` adds BEGIN and COMMIT). Connections are not checked before
    use (a round trip each time); a dead one raises `ConnectionLost` and leaves the pool."""

    kind: Kind = "postgresql"

    def __init__(self, location: Location, pool_size: int = 4,
                 connect_timeout_s: float = 10.0) -> None:
        super().__init__(location)
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as e:
            raise StorageError(f"{location}: PostgreSQL needs psycopg 3 and psycopg_pool "
                               "(pip install 'oyster-csa[postgres]')") from e
        self._errors: tuple[type[Exception], ...] = (psycopg.Error,)
        self._conflict = psycopg.errors.IntegrityError
        self._lost = psycopg.OperationalError
        try:  # one plain connection first: it fails fast, with libpq's own reason
            psycopg.connect(location.target, connect_timeout=max(1, round(connect_timeout_s))
                            ).close()
        except psycopg.Error as e:
            raise StorageError(f"{location}: cannot connect: {_reason(e)}") from None
        self._pool = ConnectionPool(
            location.target, min_size=1, max_size=max(1, pool_size), open=False,
            timeout=connect_timeout_s,
            kwargs={"connect_timeout": max(1, round(connect_timeout_s)),
                    "application_name": "oyster", "autocommit": True},
            name=f"oyster:{location}")
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except Exception as e:  # PoolTimeout, or a bad URL psycopg refuses
            self._pool.close()
            raise StorageError(f"{location}: cannot connect: {_reason(e)}") from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            return _PostgresTx(conn).execute(sql, params)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._connection() as conn, conn.transaction():
            yield _PostgresTx(conn)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection() as conn:
                yield conn
        except self._conflict as e:
            raise Conflict(f"{self.location}: {_reason(e)}") from None
        except PoolTimeout as e:
            raise StorageError(f"{self.location}: {_reason(e)}") from None
        except self._lost as e:
            raise ConnectionLost(f"{self.location}: {_reason(e)}") from None
        except self._errors as e:
            raise StorageError(f"{self.location}: {_reason(e)}") from None

    def close(self) -> None:
        self._pool.close()


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# -- schema versions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Migration:
    """One schema step of a component, in both dialects (statements separated by `;`)."""

    version: int
    description: str
    sqlite: str
    postgresql: str


_SCHEMA_TABLE = {
    "sqlite": "CREATE TABLE IF NOT EXISTS oyster_schema (component TEXT PRIMARY KEY, "
              "version INTEGER NOT NULL, updated REAL NOT NULL)",
    "postgresql": "CREATE TABLE IF NOT EXISTS oyster_schema (component TEXT PRIMARY KEY, "
                  "version INTEGER NOT NULL, updated DOUBLE PRECISION NOT NULL)",
}
# one lock for every component's migrations: replicas starting together wait for each other
_MIGRATION_LOCK = 0x6F79737465720001


def schema_version(db: Database, component: str) -> int:
    """The component's applied version; 0 when it has none yet."""
    with db.transaction() as tx:
        tx.execute(_SCHEMA_TABLE[db.kind])
        rows = tx.execute("SELECT version FROM oyster_schema WHERE component = ?", (component,))
    return int(rows[0][0]) if rows else 0


def migrate(db: Database, component: str, migrations: Sequence[Migration]) -> int:
    """Apply the migrations `db` lacks, each in order, all in one transaction; return the
    version now in force. Raise `StorageError` for a database newer than `migrations`."""
    import time

    latest = len(migrations)
    if [m.version for m in migrations] != list(range(1, latest + 1)):
        raise ValueError(f"{component}: migrations must be numbered 1..{latest}")
    with db.transaction() as tx:
        if db.kind == "postgresql":
            # CREATE TABLE IF NOT EXISTS races with itself; the lock also serialises that
            tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        tx.execute(_SCHEMA_TABLE[db.kind])
        rows = tx.execute("SELECT version FROM oyster_schema WHERE component = ?", (component,))
        current = int(rows[0][0]) if rows else 0
        if current > latest:
            raise StorageError(f"{db.location}: the {component} schema is at version {current},"
                               f" newer than this Oyster knows ({latest}); upgrade Oyster")
        for m in migrations[current:]:
            for statement in getattr(m, db.kind).split(";"):
                if statement.strip():
                    tx.execute(statement)
        if current < latest:
            if rows:
                tx.execute("UPDATE oyster_schema SET version = ?, updated = ? WHERE component = ?",
                           (latest, time.time(), component))
            else:
                tx.execute("INSERT INTO oyster_schema (component, version, updated) "
                           "VALUES (?, ?, ?)", (component, latest, time.time()))
    return latest


def open_migrated(location: Location, component: str, migrations: Sequence[Migration],
                  **options: Any) -> Database:
    """`open_database`, then `migrate` the component's schema; `StorageError` saying which
    of the two failed. `options` go to `open_database`."""
    try:
        db = open_database(location, **options)
    except StorageError as e:
        raise StorageError(f"cannot open: {e}") from None
    try:
        migrate(db, component, migrations)
    except StorageError as e:
        db.close()
        raise StorageError(f"cannot prepare the schema: {e}") from None
    return db
