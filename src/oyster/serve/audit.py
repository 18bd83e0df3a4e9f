"""The audit log: one row per request to a decision endpoint, in SQLite (WAL mode) or
PostgreSQL, chosen by the location string (`oyster-audit.db` or `postgresql://...`).

What is guaranteed:
- Every request to `/v1/chat/completions` and `/v1/decide` gets exactly one row, with the
  status the client was sent: answered ones, rejected ones (401, 413, 422, 429, ...; no
  decision was made, so the decision fields are empty), internal errors (500, with the
  decision when one was made) and clients that went away (499).
- A plain (non-streamed) response is sent only after its row is committed, so a crash of
  the server never loses a row for a response a client received. If the row cannot be
  written, the request is answered 503 instead.
- A streamed reply releases verified text as it is generated; its row is committed before
  the final chunk (the one with `finish_reason` and the `oyster` object) and `[DONE]`. A
  client that saw the final chunk has a row; a stream cut short by a crash of the server
  may have none.

SQLite with `synchronous=NORMAL` survives a crash of the server process (`FULL` also power
loss); PostgreSQL commits durably by its own settings. Writes go through one writer thread
that commits whatever is queued in one transaction (group commit), so concurrent requests
share commits and the event loop never waits on the disk. The schema is versioned and
migrated on start (`oyster.serve.storage`).

Readers (`oyster audit tail|export`) may run while servers write.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field

from oyster import telemetry
from oyster.assess.base import CategoryScore
from oyster.errors import OysterError
from oyster.policy import AuditSettings
from oyster.serve.storage import (
    ConnectionLost,
    Database,
    Kind,
    Location,
    Migration,
    StorageError,
    open_migrated,
    parse_location,
)
from oyster.types import Language, Level, Message, Strategy, UserType

Endpoint = Literal["chat", "decide"]
Outcome = Literal["decided", "passed", "regenerated", "repaired", "fallback", "upstream_error",
                  "rejected", "error", "cancelled"]
"""`decided`: decision only (no generation); `passed`, `regenerated`, `repaired`,
`fallback`: as the responder reports (a streamed reply is never regenerated);
`upstream_error`: the upstream failed and the fail mode answered; `rejected`: refused before
a decision (auth, size, shape, rate limit); `error`: the proxy failed (status 5xx);
`cancelled`: the client went away before the reply was complete (status 499)."""

COMPONENT = "audit"
MIGRATIONS = (
    Migration(1, "the decisions table", """
        CREATE TABLE IF NOT EXISTS decisions (
            seq      INTEGER PRIMARY KEY AUTOINCREMENT,
            id       TEXT NOT NULL UNIQUE,
            time     REAL NOT NULL,
            key_id   TEXT,
            endpoint TEXT NOT NULL,
            level    TEXT NOT NULL,
            strategy TEXT NOT NULL,
            outcome  TEXT NOT NULL,
            record   TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS decisions_time ON decisions(time)""", """
        CREATE TABLE IF NOT EXISTS decisions (
            seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id       TEXT NOT NULL UNIQUE,
            time     DOUBLE PRECISION NOT NULL,
            key_id   TEXT,
            endpoint TEXT NOT NULL,
            level    TEXT NOT NULL,
            strategy TEXT NOT NULL,
            outcome  TEXT NOT NULL,
            record   JSONB NOT NULL);
        CREATE INDEX IF NOT EXISTS decisions_time ON decisions(time)"""),
    # rejected requests have no decision: level and strategy may be empty; the HTTP status
    # becomes a column, so "every 429 of key X yesterday" is one indexed query
    Migration(2, "rows for rejected requests: nullable level/strategy, a status column", """
        CREATE TABLE decisions_v2 (
            seq      INTEGER PRIMARY KEY AUTOINCREMENT,
            id       TEXT NOT NULL UNIQUE,
            time     REAL NOT NULL,
            key_id   TEXT,
            endpoint TEXT NOT NULL,
            level    TEXT,
            strategy TEXT,
            outcome  TEXT NOT NULL,
            status   INTEGER NOT NULL DEFAULT 200,
            record   TEXT NOT NULL);
        INSERT INTO decisions_v2 (seq, id, time, key_id, endpoint, level, strategy, outcome,
                                  status, record)
            SELECT seq, id, time, key_id, endpoint, level, strategy, outcome,
                   COALESCE(json_extract(record, '$.status'), 200), record FROM decisions;
        DROP TABLE decisions;
        ALTER TABLE decisions_v2 RENAME TO decisions;
        CREATE INDEX decisions_time ON decisions(time);
        CREATE INDEX decisions_status ON decisions(status, time)""", """
        ALTER TABLE decisions ALTER COLUMN level DROP NOT NULL;
        ALTER TABLE decisions ALTER COLUMN strategy DROP NOT NULL;
        ALTER TABLE decisions ADD COLUMN status INTEGER NOT NULL DEFAULT 200;
        UPDATE decisions SET status = (record->>'status')::int
            WHERE record->>'status' IS NOT NULL;
        CREATE INDEX decisions_status ON decisions(status, time)"""),
    # what the review console filters on (`PostgresAuditQuery`); SQLite's console keeps a
    # side index of its own instead, so the proxy's SQLite writer carries no extra index
    Migration(3, "indexes for the review console's filters (PostgreSQL)", "", """
        CREATE INDEX IF NOT EXISTS decisions_strategy ON decisions(strategy, seq);
        CREATE INDEX IF NOT EXISTS decisions_level ON decisions(level, seq);
        CREATE INDEX IF NOT EXISTS decisions_outcome ON decisions(outcome, seq);
        CREATE INDEX IF NOT EXISTS decisions_key ON decisions(key_id, seq);
        CREATE INDEX IF NOT EXISTS decisions_language ON decisions((record->>'language'), seq);
        CREATE INDEX IF NOT EXISTS decisions_categories ON decisions
            USING GIN ((record->'categories') jsonb_path_ops)"""),
)
_INSERT = ("INSERT INTO decisions (id, time, key_id, endpoint, level, strategy, outcome, status,"
           " record) VALUES ")
_ROW = {"sqlite": "(?, ?, ?, ?, ?, ?, ?, ?, ?)", "postgresql": "(?, ?, ?, ?, ?, ?, ?, ?, ?::jsonb)"}

class AuditError(OysterError):
    """The audit log cannot be opened, written or read."""


class AuditRecord(BaseModel):
    """What the proxy knew and did for one request. The decision fields are empty for a
    request rejected before a decision. Message and reply text are present only when the
    policy's `audit.log_message_text` is on."""

    model_config = ConfigDict(frozen=True)

    id: str
    time: float = Field(description="unix seconds when the request arrived")
    key_id: str | None = Field(default=None,
                               description="name of the API key; None when auth is off or "
                                           "the request had no valid key")
    endpoint: Endpoint
    stream: bool = False
    model: str | None = None
    policy: str
    level: Level | None = None
    categories: list[CategoryScore] = Field(default_factory=list)
    attacks: list[str] = Field(default_factory=list)
    user_type: dict[UserType, float] = Field(default_factory=dict)
    strategy: Strategy | None = None
    utilities: dict[Strategy, float] = Field(default_factory=dict)
    language: Language | None = Field(default=None,
                                      description="language of the decided turn; None for a "
                                      "rejection and in rows written before it was recorded")
    outcome: Outcome
    verified: bool | None = Field(default=None, description="None when nothing was generated")
    problems: list[str] = Field(default_factory=list)
    fallback_used: bool = False
    upstream_error: str | None = None
    error: str | None = Field(default=None, description="why the request was rejected or "
                              "failed: the error code (or type) and message sent")
    status: int = 200
    latency_ms: float
    decide_ms: float | None = None
    upstream_ms: float | None = None
    messages: list[Message] | None = None
    reply: str | None = None


# The rows submitted while serving one request (see `collecting_rows`).
_request_rows: ContextVar[list[AuditRecord] | None] = ContextVar("oyster_audit_rows",
                                                                 default=None)


@contextmanager
def collecting_rows() -> Iterator[list[AuditRecord]]:
    """Collect the rows any `AuditLog` is handed in this context (and the tasks it starts):
    how the request middleware knows whether a handler wrote its request's row."""
    rows: list[AuditRecord] = []
    token = _request_rows.set(rows)
    try:
        yield rows
    finally:
        _request_rows.reset(token)


class AuditLog:
    """Append-only decision log. `open()` before use and `close()` after (or use `with`);
    `append` (blocking) and `aappend` (async) return once the row is committed."""

    def __init__(self, location: str | Path | Location, settings: AuditSettings | None = None,
                 max_batch: int = 512, busy_timeout_s: float = 5.0, pool_size: int = 2,
                 connect_timeout_s: float = 10.0) -> None:
        self.location = (location if isinstance(location, Location)
                         else parse_location(location, "audit log"))
        self.settings = settings or AuditSettings()
        self._max_batch = max_batch
        self._busy_timeout_s = busy_timeout_s
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._queue: queue.Queue[tuple[AuditRecord, Future[None]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._ready: Future[Database] = Future()

    @property
    def kind(self) -> Kind:
        return self.location.kind

    def open(self) -> AuditLog:
        """Connect, create or migrate the schema (raising `AuditError` if it cannot) and
        start the writer."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="oyster-audit")
            self._thread.start()
        exc = self._ready.exception()
        if exc is not None:
            self._thread.join()
            self._thread = None
            self._ready = Future()
            raise exc
        return self

    def close(self) -> None:
        """Commit what is queued and stop the writer. Safe to call twice."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
            self._ready = Future()

    def __enter__(self) -> AuditLog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self) -> None:
        """Raise `AuditError` unless the database answers now (for readiness checks)."""
        if self._thread is None or not self._ready.done():
            raise AuditError(f"{self.location}: the audit log is not open")
        try:
            self._ready.result().check()
        except StorageError as e:
            raise AuditError(str(e)) from None

    def submit(self, record: AuditRecord) -> Future[None]:
        """Queue a row; the future resolves when it is committed. Never blocks, so it is safe
        in a `finally` of a cancelled task."""
        if self._thread is None:
            raise AuditError(f"{self.location}: the audit log is not open")
        rows = _request_rows.get()
        if rows is not None:
            rows.append(record)
        done: Future[None] = Future()
        self._queue.put((record, done))
        return done

    def append(self, record: AuditRecord) -> None:
        self.submit(record).result()

    async def aappend(self, record: AuditRecord) -> None:
        with telemetry.span("oyster.audit", {"oyster.audit.backend": self.kind,
                                             "oyster.request_id": record.id,
                                             "http.response.status_code": record.status}):
            await asyncio.wrap_future(self.submit(record))

    def _connect(self) -> Database:
        try:
            return open_migrated(self.location, COMPONENT, MIGRATIONS,
                                 pool_size=self._pool_size, busy_timeout_s=self._busy_timeout_s,
                                 synchronous=self.settings.synchronous,
                                 connect_timeout_s=self._connect_timeout_s)
        except StorageError as e:
            raise AuditError(f"audit log: {e}") from None

    def _run(self) -> None:
        try:
            db = self._connect()
        except AuditError as e:
            self._ready.set_exception(e)
            return
        self._ready.set_result(db)
        while True:
            item = self._queue.get()
            batch = []
            while item is not None:
                batch.append(item)
                if len(batch) >= self._max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._commit(db, batch)
            if item is None:  # close() asked to stop; everything before it is committed
                break
        db.close()

    def _commit(self, db: Database, batch: list[tuple[AuditRecord, Future[None]]]) -> None:
        if not batch:
            return
        # a request whose client went away has cancelled its future: its row is written all
        # the same, and only the futures still waited on are resolved (setting a result on
        # a cancelled one raises, and would kill this thread)
        waiting = [done for _, done in batch if done.set_running_or_notify_cancel()]
        rows = [(r.id, r.time, r.key_id, r.endpoint, r.level, r.strategy, r.outcome, r.status,
                 r.model_dump_json(exclude_none=True)) for r, _ in batch]
        try:
            try:
                _insert(db, rows)
            except ConnectionLost:
                # the batch may have committed before the connection broke: a retry on a
                # fresh connection skips the rows already there
                _insert(db, rows, skip_existing=True)
        except StorageError as e:
            error = AuditError(f"cannot write the audit log: {e}")
            for done in waiting:
                done.set_exception(error)
            return
        for done in waiting:
            done.set_result(None)


def _insert(db: Database, rows: list[tuple[Any, ...]], skip_existing: bool = False) -> None:
    """All rows in one transaction: on PostgreSQL one multi-row statement (one round trip,
    atomic on its own), on SQLite one prepared statement per row inside BEGIN/COMMIT."""
    if db.kind == "sqlite":
        with db.transaction() as tx:
            tx.executemany(_INSERT + _ROW["sqlite"], rows)
        return
    sql = _INSERT + ", ".join([_ROW["postgresql"]] * len(rows))
    db.execute(sql + (" ON CONFLICT (id) DO NOTHING" if skip_existing else ""),
               [v for row in rows for v in row])


# -- readers ----------------------------------------------------------------------------------

class AuditReader:
    """A read-only connection for `tail`, `export` and `count`."""

    def __init__(self, location: str | Path | Location) -> None:
        self.location = (location if isinstance(location, Location)
                         else parse_location(location, "audit log"))
        self._conn: Any
        if self.location.kind == "sqlite":
            p = self.location.path
            if not p.exists():
                raise AuditError(f"{p}: no audit log here")
            try:
                self._conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
            except sqlite3.Error as e:
                raise AuditError(f"{p}: cannot read the audit log: {e}") from e
            return
        try:
            import psycopg
        except ImportError as e:
            raise AuditError(f"{self.location}: PostgreSQL needs psycopg 3") from e
        try:
            self._conn = psycopg.connect(self.location.target, autocommit=True,
                                         connect_timeout=10)
        except psycopg.Error as e:
            raise AuditError(f"{self.location}: cannot read the audit log: "
                             f"{str(e).strip().splitlines()[0]}") from None

    def rows(self, sql: str, args: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        try:
            if self.location.kind == "sqlite":
                yield from self._conn.execute(sql, args)
                return
            with self._conn.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), args)
                while batch := cur.fetchmany(1000):
                    yield from batch
        except Exception as e:
            if self.location.kind == "sqlite" and not isinstance(e, sqlite3.Error):
                raise
            if "relation \"decisions\" does not exist" in str(e) or "no such table" in str(e):
                raise AuditError(f"{self.location}: no audit log here") from None
            raise AuditError(f"{self.location}: cannot read the audit log: {e}") from None

    def records(self, sql: str, args: tuple[Any, ...]) -> Iterator[tuple[int, AuditRecord]]:
        for seq, blob in self.rows(sql, args):
            data = json.loads(blob) if isinstance(blob, str | bytes) else blob
            yield int(seq), AuditRecord.model_validate(data)

    def close(self) -> None:
        self._conn.close()


def tail(location: str | Path | Location, n: int = 20, after_seq: int = 0
         ) -> list[tuple[int, AuditRecord]]:
    """The last `n` rows (oldest first) with their sequence numbers; with `after_seq`, only
    rows after that one (for `--follow`)."""
    reader = AuditReader(location)
    try:
        rows = list(reader.records("SELECT seq, record FROM decisions WHERE seq > ? "
                                   "ORDER BY seq DESC LIMIT ?", (after_seq, n)))
    finally:
        reader.close()
    return rows[::-1]


def export(location: str | Path | Location, since: float | None = None,
           until: float | None = None) -> Iterator[AuditRecord]:
    """Every row in commit-sequence order, optionally within [since, until) unix seconds."""
    reader = AuditReader(location)
    try:
        yield from (r for _, r in reader.records(
            "SELECT seq, record FROM decisions WHERE time >= ? AND time < ? ORDER BY seq",
            (since if since is not None else float("-inf"),
             until if until is not None else float("inf"))))
    finally:
        reader.close()


def count(location: str | Path | Location) -> int:
    reader = AuditReader(location)
    try:
        [(n,)] = list(reader.rows("SELECT COUNT(*) FROM decisions", ()))
    finally:
        reader.close()
    return int(n)


def write_records(records: Iterable[AuditRecord], stream: TextIO,
                  fmt: Literal["jsonl", "csv"]) -> int:
    """Write records as JSONL (one record per line) or CSV (one column per field, lists and
    mappings as JSON); the number written. An empty CSV still has its header."""
    import csv

    n = 0
    writer = csv.DictWriter(stream, fieldnames=list(AuditRecord.model_fields))
    if fmt == "csv":
        writer.writeheader()
    for record in records:
        row = record.model_dump(mode="json")
        if fmt == "jsonl":
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            writer.writerow({k: json.dumps(v, ensure_ascii=False)
                             if isinstance(v, dict | list) else v for k, v in row.items()})
        n += 1
    return n
