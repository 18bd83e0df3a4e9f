"""The audit log: one row per decision, appended to SQLite in WAL mode.

Durability: a row is committed before the proxy returns the response it describes, so a
crash of the server process never loses an answered request (WAL with `synchronous=NORMAL`
survives a process crash; `FULL` also survives power loss). Writes go through one writer
thread that commits whatever is queued in one transaction (group commit), so concurrent
requests share fsyncs and the event loop never blocks on the disk.

Readers (`oyster audit tail|export`) open the file read-only and may run while the server
writes.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field

from oyster.assess.base import CategoryScore
from oyster.errors import OysterError
from oyster.taxonomy.policy import AuditSettings
from oyster.types import Language, Level, Message, Strategy, UserType

Endpoint = Literal["chat", "decide"]
Outcome = Literal["decided", "passed", "regenerated", "repaired", "fallback", "upstream_error"]
"""`decided`: decision only (no generation); `passed`, `regenerated`, `repaired`,
`fallback`: as the responder reports (a streamed reply is never regenerated);
`upstream_error`: the upstream failed and the fail mode answered."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT NOT NULL UNIQUE,
    time     REAL NOT NULL,
    key_id   TEXT,
    endpoint TEXT NOT NULL,
    level    TEXT NOT NULL,
    strategy TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    record   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions(time);
"""


class AuditError(OysterError):
    """The audit log cannot be opened, written or read."""


class AuditRecord(BaseModel):
    """What the proxy knew and did for one request. Message and reply text are present only
    when the policy's `audit.log_message_text` is on."""

    model_config = ConfigDict(frozen=True)

    id: str
    time: float = Field(description="unix seconds when the request arrived")
    key_id: str | None = Field(default=None,
                               description="name of the API key; None when auth is off")
    endpoint: Endpoint
    stream: bool = False
    model: str | None = None
    policy: str
    level: Level
    categories: list[CategoryScore]
    attacks: list[str]
    user_type: dict[UserType, float]
    strategy: Strategy
    utilities: dict[Strategy, float]
    language: Language | None = Field(default=None,
                                      description="language of the decided turn; None in rows "
                                      "written before it was recorded")
    outcome: Outcome
    verified: bool | None = Field(default=None, description="None when nothing was generated")
    problems: list[str] = Field(default_factory=list)
    fallback_used: bool = False
    upstream_error: str | None = None
    status: int = 200
    latency_ms: float
    decide_ms: float
    upstream_ms: float | None = None
    messages: list[Message] | None = None
    reply: str | None = None


class AuditLog:
    """Append-only decision log. `open()` before use and `close()` after (or use `with`);
    `append` (blocking) and `aappend` (async) return once the row is committed."""

    def __init__(self, path: str | Path, settings: AuditSettings | None = None,
                 max_batch: int = 512, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.settings = settings or AuditSettings()
        self._max_batch = max_batch
        self._busy_timeout_s = busy_timeout_s
        self._queue: queue.Queue[tuple[AuditRecord, Future[None]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._ready: Future[None] = Future()

    def open(self) -> AuditLog:
        """Create the file and schema (raising `AuditError` if it cannot) and start the writer."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="oyster-audit")
            self._thread.start()
        self._ready.result()
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

    def submit(self, record: AuditRecord) -> Future[None]:
        """Queue a row; the future resolves when it is committed. Never blocks, so it is safe
        in a `finally` of a cancelled task."""
        if self._thread is None:
            raise AuditError(f"{self.path}: the audit log is not open")
        done: Future[None] = Future()
        self._queue.put((record, done))
        return done

    def append(self, record: AuditRecord) -> None:
        self.submit(record).result()

    async def aappend(self, record: AuditRecord) -> None:
        await asyncio.wrap_future(self.submit(record))

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None,
                                   timeout=self._busy_timeout_s)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.settings.synchronous}")
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise AuditError(f"{self.path}: cannot open the audit log: {e}") from e
        return conn

    def _run(self) -> None:
        try:
            conn = self._connect()
        except AuditError as e:
            self._ready.set_exception(e)
            return
        self._ready.set_result(None)
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
            self._commit(conn, batch)
            if item is None:  # close() asked to stop; everything before it is committed
                break
        conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[tuple[AuditRecord, Future[None]]]
                ) -> None:
        if not batch:
            return
        rows = [(r.id, r.time, r.key_id, r.endpoint, r.level, r.strategy, r.outcome,
                 r.model_dump_json(exclude_none=True)) for r, _ in batch]
        try:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO decisions (id, time, key_id, endpoint, level, strategy,"
                             " outcome, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = AuditError(f"{self.path}: cannot write the audit log: {e}")
            for _, done in batch:
                done.set_exception(error)
            return
        for _, done in batch:
            done.set_result(None)


def _reader(path: str | Path) -> sqlite3.Connection:
    p = Path(path)
    if not p.exists():
        raise AuditError(f"{p}: no audit log here")
    try:
        return sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise AuditError(f"{p}: cannot read the audit log: {e}") from e


def _records(conn: sqlite3.Connection, sql: str, args: tuple[object, ...]
             ) -> Iterator[tuple[int, AuditRecord]]:
    try:
        for seq, blob in conn.execute(sql, args):
            yield seq, AuditRecord.model_validate(json.loads(blob))
    except sqlite3.Error as e:
        raise AuditError(f"cannot read the audit log: {e}") from e


def tail(path: str | Path, n: int = 20, after_seq: int = 0) -> list[tuple[int, AuditRecord]]:
    """The last `n` rows (oldest first) with their sequence numbers; with `after_seq`, only
    rows appended after that one (for `--follow`)."""
    conn = _reader(path)
    try:
        rows = list(_records(conn, "SELECT seq, record FROM decisions WHERE seq > ? "
                                   "ORDER BY seq DESC LIMIT ?", (after_seq, n)))
    finally:
        conn.close()
    return rows[::-1]


def export(path: str | Path, since: float | None = None, until: float | None = None
           ) -> Iterator[AuditRecord]:
    """Every row in time order, optionally within [since, until) unix seconds."""
    conn = _reader(path)
    try:
        yield from (r for _, r in _records(
            conn, "SELECT seq, record FROM decisions WHERE time >= ? AND time < ? ORDER BY seq",
            (since if since is not None else float("-inf"),
             until if until is not None else float("inf"))))
    finally:
        conn.close()


def count(path: str | Path) -> int:
    conn = _reader(path)
    try:
        (n,) = conn.execute("SELECT COUNT(*) FROM decisions").fetchone()
    except sqlite3.Error as e:
        raise AuditError(f"{path}: cannot read the audit log: {e}") from e
    finally:
        conn.close()
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
