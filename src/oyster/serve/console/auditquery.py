"""Reading the audit log for the console: filter, page, aggregate per hour or day, export.

`AuditQuery` is the interface the console codes against; a store implements it once.
`SqliteAuditQuery` reads the proxy's SQLite log. The log keeps most of each row in one JSON
column, which is cheap to write but slow to filter on, so the reader keeps a derived index
beside it (`<audit>.console-index`, a SQLite file of its own): one narrow row of facts per
decision plus a (category, row) table, both indexed. It is filled incrementally from the
log's sequence numbers before each query, rebuilt when the log it describes was replaced,
and can be deleted at any time. The audit log itself is opened read-only: the console never
writes to it and never slows the proxy's writer.

A PostgreSQL store answers the same five questions from its own table (expression indexes
on the JSONB fields, a GIN index on the categories, `percentile_disc` for p95), with no
side index.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field

from oyster.serve.audit import AuditError, AuditRecord, Outcome
from oyster.types import STRATEGIES, Language, Level, Strategy

BucketUnit = Literal["hour", "day"]
T = TypeVar("T")
BUCKET_SECONDS: dict[BucketUnit, int] = {"hour": 3600, "day": 86400}


class AuditFilter(BaseModel):
    """Which rows: every field left empty matches everything; lists match any member."""

    model_config = ConfigDict(frozen=True)

    since: float | None = Field(default=None, description="unix seconds, inclusive")
    until: float | None = Field(default=None, description="unix seconds, exclusive")
    strategies: tuple[Strategy, ...] = ()
    levels: tuple[Level, ...] = ()
    outcomes: tuple[Outcome, ...] = ()
    category: str | None = Field(default=None, description="a category id among the row's")
    language: Language | None = None
    key: str | None = Field(default=None, description="API key name; '-' for rows without")


class AuditRow(BaseModel):
    """One row as the browser lists it (the full record is one `record()` away)."""

    model_config = ConfigDict(frozen=True)

    seq: int
    id: str
    time: float
    key_id: str | None
    endpoint: str
    level: Level
    strategy: Strategy
    outcome: Outcome
    language: Language | None
    categories: list[str]
    attacks: int
    latency_ms: float
    status: int


class AuditPage(BaseModel):
    """Newest first. `older`/`newer` are the cursors for the next and previous pages."""

    rows: list[AuditRow]
    total: int = Field(description="rows matching the filter, all pages")
    older: int | None = None
    newer: int | None = None


class TimeBucket(BaseModel):
    start: float = Field(description="unix seconds at the start of the hour or day (UTC)")
    decisions: int
    strategies: dict[Strategy, int]
    refusals: int
    with_attacks: int
    regenerated: int
    fallbacks: int
    p95_latency_ms: float | None


class Facets(BaseModel):
    """What the filters can offer: the values present in the log."""

    rows: int
    keys: list[str]
    categories: list[str]
    languages: list[str]
    first: float | None
    last: float | None


class AuditQuery(ABC):
    """Read-only questions the console asks of an audit store."""

    @abstractmethod
    def page(self, where: AuditFilter, before: int | None = None, after: int | None = None,
             limit: int = 50) -> AuditPage:
        """Matching rows newest first: the newest `limit`, or those just older than the
        cursor `before`, or just newer than `after`."""

    @abstractmethod
    def record(self, id: str) -> AuditRecord | None:
        """The full record with this request id."""

    @abstractmethod
    def records(self, where: AuditFilter) -> Iterator[AuditRecord]:
        """Every matching record, oldest first (for export)."""

    @abstractmethod
    def buckets(self, where: AuditFilter, unit: BucketUnit) -> list[TimeBucket]:
        """Matching rows counted per hour or day (UTC), empty buckets left out."""

    @abstractmethod
    def facets(self) -> Facets:
        """The values present in the log."""


_INDEX_SCHEMA = """
CREATE TABLE IF NOT EXISTS idx.facts (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL,
    time       REAL NOT NULL,
    key_id     TEXT,
    endpoint   TEXT NOT NULL,
    level      TEXT NOT NULL,
    strategy   TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    language   TEXT,
    categories TEXT NOT NULL,
    attacks    INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    status     INTEGER NOT NULL,
    fallback   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx.facts_time ON facts(time);
CREATE INDEX IF NOT EXISTS idx.facts_strategy ON facts(strategy, seq);
CREATE INDEX IF NOT EXISTS idx.facts_level ON facts(level, seq);
CREATE INDEX IF NOT EXISTS idx.facts_outcome ON facts(outcome, seq);
CREATE INDEX IF NOT EXISTS idx.facts_language ON facts(language, seq);
CREATE INDEX IF NOT EXISTS idx.facts_key ON facts(key_id, seq);
CREATE TABLE IF NOT EXISTS idx.categories (
    category TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (category, seq)
) WITHOUT ROWID;
"""

_SYNC_FACTS = """
INSERT INTO idx.facts
SELECT seq, id, time, key_id, endpoint, level, strategy, outcome,
       json_extract(record, '$.language'),
       coalesce((SELECT group_concat(json_extract(c.value, '$.id'), ' ')
                 FROM json_each(record, '$.categories') AS c), ''),
       coalesce(json_array_length(record, '$.attacks'), 0),
       json_extract(record, '$.latency_ms'),
       coalesce(json_extract(record, '$.status'), 200),
       coalesce(json_extract(record, '$.fallback_used'), 0)
FROM main.decisions WHERE seq > ? AND seq <= ? ORDER BY seq
"""

_SYNC_CATEGORIES = """
INSERT OR IGNORE INTO idx.categories
SELECT json_extract(c.value, '$.id'), d.seq
FROM main.decisions AS d, json_each(d.record, '$.categories') AS c
WHERE d.seq > ? AND d.seq <= ?
"""

_ROW_COLUMNS = ("seq, id, time, key_id, endpoint, level, strategy, outcome, language, "
                "categories, attacks, latency_ms, status")


def _where(where: AuditFilter) -> tuple[str, list[object]]:
    """The filter as SQL over `idx.facts AS f`."""
    clauses: list[str] = []
    args: list[object] = []
    if where.since is not None:
        clauses.append("f.time >= ?")
        args.append(where.since)
    if where.until is not None:
        clauses.append("f.time < ?")
        args.append(where.until)
    for column, values in (("strategy", where.strategies), ("level", where.levels),
                           ("outcome", where.outcomes)):
        if values:
            clauses.append(f"f.{column} IN ({', '.join('?' * len(values))})")
            args.extend(values)
    if where.language is not None:
        clauses.append("f.language = ?")
        args.append(where.language)
    if where.key == "-":
        clauses.append("f.key_id IS NULL")
    elif where.key is not None:
        clauses.append("f.key_id = ?")
        args.append(where.key)
    if where.category is not None:
        clauses.append("f.seq IN (SELECT seq FROM idx.categories WHERE category = ?)")
        args.append(where.category)
    return (" AND ".join(clauses) or "1"), args


def _row(values: tuple[object, ...]) -> AuditRow:
    names = [n.strip() for n in _ROW_COLUMNS.split(",")]
    data = dict(zip(names, values, strict=True))
    data["categories"] = str(data["categories"]).split()
    return AuditRow.model_validate(data)


class _Bucket:
    """Counts for one hour or day while scanning."""

    __slots__ = ("attacked", "fallbacks", "latencies", "regenerated", "strategies")

    def __init__(self) -> None:
        self.strategies: dict[Strategy, int] = dict.fromkeys(STRATEGIES, 0)
        self.attacked = self.regenerated = self.fallbacks = 0
        self.latencies: list[float] = []

    def add(self, strategy: Strategy, attacked: int, outcome: str, fallback: int,
            latency: float) -> None:
        self.strategies[strategy] += 1
        self.attacked += attacked
        self.regenerated += outcome == "regenerated"
        self.fallbacks += bool(fallback)
        self.latencies.append(latency)

    def result(self, start: float) -> TimeBucket:
        ordered = sorted(self.latencies)
        p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]  # nearest rank
        return TimeBucket(start=start, decisions=len(ordered), strategies=self.strategies,
                          refusals=self.strategies["refuse"], with_attacks=self.attacked,
                          regenerated=self.regenerated, fallbacks=self.fallbacks,
                          p95_latency_ms=p95)


class SqliteAuditQuery(AuditQuery):
    """The console's reader of a SQLite audit log (see the module docstring). Facets and
    the chart aggregates of the last filters (`chart_cache` results) are kept until the log
    grows, so paging through one filter's rows does not recount them."""

    def __init__(self, path: str | Path, index_path: str | Path | None = None,
                 chart_cache: int = 16) -> None:
        self.path = Path(path)
        self.index_path = Path(index_path) if index_path else self._default_index_path()
        self._sync_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._kept_results: dict[tuple[str, int], object] = {}
        self._chart_cache = chart_cache  # results kept; 0: none

    def _default_index_path(self) -> Path:
        folder = self.path.resolve().parent
        if os.access(folder, os.W_OK):
            return folder / (self.path.name + ".console-index")
        # a read-only folder: keep the index in the temp folder, one per log
        digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"oyster-console-index-{digest}.db"

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise AuditError(f"{self.path}: no audit log here yet")
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                   check_same_thread=False, timeout=5.0)
            conn.execute("ATTACH DATABASE ? AS idx", (str(self.index_path),))
            conn.execute("PRAGMA idx.journal_mode=WAL")
            conn.executescript(_INDEX_SCHEMA)
        except sqlite3.Error as e:
            raise AuditError(f"{self.path}: cannot read the audit log: {e}") from e
        return conn

    def _sync(self, conn: sqlite3.Connection) -> None:
        """Bring the index up to the log's last row (rebuilt if the log was replaced)."""
        with self._sync_lock:
            (last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM main.decisions").fetchone()
            indexed = conn.execute("SELECT seq, id FROM idx.facts ORDER BY seq DESC LIMIT 1"
                                   ).fetchone()
            done = 0
            if indexed is not None:
                same = conn.execute("SELECT id FROM main.decisions WHERE seq = ?",
                                    (indexed[0],)).fetchone()
                done = indexed[0] if same is not None and same[0] == indexed[1] else -1
            if done == last:
                return
            conn.execute("BEGIN")
            try:
                if done == -1:  # a different log now lives at this path
                    conn.execute("DELETE FROM idx.facts")
                    conn.execute("DELETE FROM idx.categories")
                    done = 0
                conn.execute(_SYNC_FACTS, (done, last))
                conn.execute(_SYNC_CATEGORIES, (done, last))
                conn.execute("COMMIT")
            except sqlite3.Error:
                conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            self._sync(conn)
            yield conn
        except sqlite3.Error as e:
            raise AuditError(f"{self.path}: cannot read the audit log: {e}") from e
        finally:
            conn.close()

    def page(self, where: AuditFilter, before: int | None = None, after: int | None = None,
             limit: int = 50) -> AuditPage:
        sql, args = _where(where)
        with self._reading() as conn:
            (total,) = conn.execute(f"SELECT count(*) FROM idx.facts AS f WHERE {sql}",
                                    args).fetchone()
            if after is not None:
                found = conn.execute(
                    f"SELECT {_ROW_COLUMNS} FROM idx.facts AS f WHERE {sql} AND f.seq > ? "
                    "ORDER BY f.seq ASC LIMIT ?", [*args, after, limit + 1]).fetchall()
                more_newer = len(found) > limit
                rows = [_row(r) for r in found[:limit]][::-1]
                more_older = bool(rows) and self._exists(conn, sql, args, "<", rows[-1].seq)
            else:
                cursor = [before] if before is not None else []
                found = conn.execute(
                    f"SELECT {_ROW_COLUMNS} FROM idx.facts AS f WHERE {sql}"
                    + (" AND f.seq < ?" if before is not None else "")
                    + " ORDER BY f.seq DESC LIMIT ?", [*args, *cursor, limit + 1]).fetchall()
                more_older = len(found) > limit
                rows = [_row(r) for r in found[:limit]]
                more_newer = bool(rows) and self._exists(conn, sql, args, ">", rows[0].seq)
        return AuditPage(rows=rows, total=int(total),
                         older=rows[-1].seq if more_older else None,
                         newer=rows[0].seq if more_newer else None)

    @staticmethod
    def _exists(conn: sqlite3.Connection, sql: str, args: list[object], op: str,
                seq: int) -> bool:
        return conn.execute(f"SELECT 1 FROM idx.facts AS f WHERE {sql} AND f.seq {op} ? "
                            "LIMIT 1", [*args, seq]).fetchone() is not None

    def record(self, id: str) -> AuditRecord | None:
        with self._reading() as conn:
            found = conn.execute("SELECT record FROM main.decisions WHERE id = ?",
                                 (id,)).fetchone()
        return AuditRecord.model_validate(json.loads(found[0])) if found else None

    def records(self, where: AuditFilter) -> Iterator[AuditRecord]:
        sql, args = _where(where)
        with self._reading() as conn:
            for (blob,) in conn.execute(
                    f"SELECT d.record FROM idx.facts AS f JOIN main.decisions AS d "
                    f"ON d.seq = f.seq WHERE {sql} ORDER BY f.seq", args):
                yield AuditRecord.model_validate(json.loads(blob))

    def _kept(self, conn: sqlite3.Connection, name: str, compute: Callable[[], T]) -> T:
        """`compute()`, kept until the log grows (at most `chart_cache` results)."""
        (last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM idx.facts").fetchone()
        key = (name, last)
        with self._cache_lock:
            if key in self._kept_results:
                return cast(T, self._kept_results[key])
        result = compute()
        with self._cache_lock:
            self._kept_results[key] = result
            while len(self._kept_results) > self._chart_cache:
                self._kept_results.pop(next(iter(self._kept_results)))
        return result

    def buckets(self, where: AuditFilter, unit: BucketUnit) -> list[TimeBucket]:
        # One scan of the narrow facts table, counted here: cheaper than SQLite's GROUP BY
        # plus a window function for the p95 (each of which sorts every matching row).
        sql, args = _where(where)
        width = BUCKET_SECONDS[unit]

        def count() -> list[TimeBucket]:
            grouped: dict[int, _Bucket] = {}
            for b, strategy, attacked, outcome, fallback, latency in conn.execute(
                    f"SELECT CAST(f.time / {width} AS INTEGER), f.strategy, f.attacks > 0, "
                    f"f.outcome, f.fallback, f.latency_ms FROM idx.facts AS f WHERE {sql}",
                    args):
                bucket = grouped.get(b)
                if bucket is None:
                    bucket = grouped[b] = _Bucket()
                bucket.add(strategy, attacked, outcome, fallback, latency)
            return [grouped[b].result(float(b * width)) for b in sorted(grouped)]

        with self._reading() as conn:
            return self._kept(conn, f"buckets {unit} {where.model_dump_json()}", count)

    def facets(self) -> Facets:
        def look() -> Facets:
            rows, first, last = conn.execute(
                "SELECT count(*), min(time), max(time) FROM idx.facts").fetchone()
            keys = [k for (k,) in conn.execute(
                "SELECT DISTINCT key_id FROM idx.facts WHERE key_id IS NOT NULL ORDER BY 1")]
            categories = [c for (c,) in conn.execute(
                "SELECT DISTINCT category FROM idx.categories ORDER BY 1")]
            languages = [lang for (lang,) in conn.execute(
                "SELECT DISTINCT language FROM idx.facts WHERE language IS NOT NULL "
                "ORDER BY 1")]
            return Facets(rows=int(rows), keys=keys, categories=categories,
                          languages=languages, first=first, last=last)

        with self._reading() as conn:
            return self._kept(conn, "facets", look)
