"""Reading the audit log for the console: filter, page, aggregate per hour or day, export.

`AuditQuery` is the interface the console codes against; a store implements it once, and
`audit_query(location)` picks the one for a SQLite file or a `postgresql://` URL.

`SqliteAuditQuery` reads the proxy's SQLite log. The log keeps most of each row in one JSON
column, which is cheap to write but slow to filter on, so the reader keeps a derived index
beside it (`<audit>.console-index`, a SQLite file of its own): one narrow row of facts per
request plus a (category, row) table, both indexed. It is filled incrementally from the
log's sequence numbers before each query, rebuilt when the log it describes was replaced,
and can be deleted at any time. The audit log itself is opened read-only: the console never
writes to it and never slows the proxy's writer.

`PostgresAuditQuery` answers the same five questions from the proxy's own table, with the
indexes of audit schema v3 (level, strategy, outcome and key columns, the language inside
the JSONB record, a GIN index on its categories) and no side index.

Rows of requests rejected before a decision (401, 413, 422, 429, ...) have no level or
strategy: they are listed and counted per bucket, but take no part in the strategy mix, the
refusal rate or the p95 latency, which describe decided requests.
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
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field

from oyster.serve import audit
from oyster.serve.audit import AuditError, AuditReader, AuditRecord, Outcome
from oyster.serve.storage import Location, parse_location
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
    level: Level | None = Field(description="None for a request rejected before a decision")
    strategy: Strategy | None
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
    decisions: int = Field(description="requests with a decision (the rest counts below)")
    undecided: int = Field(default=0, description="requests rejected, failed or cancelled "
                           "before a decision was made")
    strategies: dict[Strategy, int]
    refusals: int
    with_attacks: int
    regenerated: int
    fallbacks: int
    p95_latency_ms: float | None = Field(description="over the decided requests")


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


def audit_query(location: str | Path) -> AuditQuery:
    """The reader for the proxy's audit log at `location` (a SQLite file or a PostgreSQL
    URL, as `oyster serve --audit-db` takes it)."""
    where = parse_location(location, "audit log")
    return PostgresAuditQuery(where) if where.kind == "postgresql" else SqliteAuditQuery(
        where.path)


class _KeptResults:
    """Answers to costly questions (facets, chart aggregates) kept while the log has not
    changed: keyed by the question and a stamp of the log's state; at most `size` kept."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._results: dict[tuple[str, object], object] = {}

    def get(self, question: str, stamp: object, compute: Callable[[], T]) -> T:
        key = (question, stamp)
        with self._lock:
            if key in self._results:
                return cast(T, self._results[key])
        result = compute()
        with self._lock:
            self._results[key] = result
            while len(self._results) > self._size:
                self._results.pop(next(iter(self._results)))
        return result


# The side index's own layout; an index file of another version is rebuilt (it is derived).
_INDEX_VERSION = 2
_INDEX_SCHEMA = """
CREATE TABLE IF NOT EXISTS idx.facts (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL,
    time       REAL NOT NULL,
    key_id     TEXT,
    endpoint   TEXT NOT NULL,
    level      TEXT,
    strategy   TEXT,
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


def _filter_sql(where: AuditFilter, column: str, language: str, category: str,
                category_arg: Callable[[str], object], always: str) -> tuple[str, list[object]]:
    """The filter as SQL: `column` prefixes the plain columns, `language` and `category` are
    the two tests the stores keep differently (each with one `?`), `always` the empty filter."""
    clauses: list[str] = []
    args: list[object] = []
    if where.since is not None:
        clauses.append(f"{column}time >= ?")
        args.append(where.since)
    if where.until is not None:
        clauses.append(f"{column}time < ?")
        args.append(where.until)
    for name, values in (("strategy", where.strategies), ("level", where.levels),
                         ("outcome", where.outcomes)):
        if values:
            clauses.append(f"{column}{name} IN ({', '.join('?' * len(values))})")
            args.extend(values)
    if where.language is not None:
        clauses.append(language)
        args.append(where.language)
    if where.key == "-":
        clauses.append(f"{column}key_id IS NULL")
    elif where.key is not None:
        clauses.append(f"{column}key_id = ?")
        args.append(where.key)
    if where.category is not None:
        clauses.append(category)
        args.append(category_arg(where.category))
    return (" AND ".join(clauses) or always), args


def _where(where: AuditFilter) -> tuple[str, list[object]]:
    """The filter as SQL over `idx.facts AS f`."""
    return _filter_sql(where, "f.", "f.language = ?",
                       "f.seq IN (SELECT seq FROM idx.categories WHERE category = ?)",
                       lambda c: c, "1")


def _row(values: tuple[object, ...]) -> AuditRow:
    names = [n.strip() for n in _ROW_COLUMNS.split(",")]
    data = dict(zip(names, values, strict=True))
    data["categories"] = str(data["categories"]).split()
    return AuditRow.model_validate(data)


class _Bucket:
    """Counts for one hour or day while scanning."""

    __slots__ = ("attacked", "fallbacks", "latencies", "regenerated", "strategies",
                 "undecided")

    def __init__(self) -> None:
        self.strategies: dict[Strategy, int] = dict.fromkeys(STRATEGIES, 0)
        self.attacked = self.regenerated = self.fallbacks = self.undecided = 0
        self.latencies: list[float] = []

    def add(self, strategy: Strategy | None, attacked: int, outcome: str, fallback: int,
            latency: float) -> None:
        if strategy is None:  # rejected before a decision
            self.undecided += 1
            return
        self.strategies[strategy] += 1
        self.attacked += attacked
        self.regenerated += outcome == "regenerated"
        self.fallbacks += bool(fallback)
        self.latencies.append(latency)

    def result(self, start: float) -> TimeBucket:
        ordered = sorted(self.latencies)
        p95 = ordered[math.ceil(0.95 * len(ordered)) - 1] if ordered else None  # nearest rank
        return TimeBucket(start=start, decisions=len(ordered), undecided=self.undecided,
                          strategies=self.strategies,
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
        self._kept_results = _KeptResults(chart_cache)

    def _default_index_path(self) -> Path:
        folder = self.path.resolve().parent
        if os.access(folder, os.W_OK):
            return folder / (self.path.name + ".console-index")
        # a read-only folder: keep the index in the temp folder, one per log
        digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"oyster-console-index-{digest}.db"

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise AuditError(f"{self.path}: no audit log here yet")
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                   check_same_thread=False, timeout=5.0)
            conn.execute("ATTACH DATABASE ? AS idx", (str(self.index_path),))
            conn.execute("PRAGMA idx.journal_mode=WAL")
            with self._sync_lock:
                (version,) = conn.execute("PRAGMA idx.user_version").fetchone()
                if version != _INDEX_VERSION:
                    conn.executescript("DROP TABLE IF EXISTS idx.facts; "
                                       "DROP TABLE IF EXISTS idx.categories;")
                    conn.execute(f"PRAGMA idx.user_version = {_INDEX_VERSION}")
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
        return self._kept_results.get(name, last, compute)

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


# -- PostgreSQL --------------------------------------------------------------------------------

_PG_ROW = ("seq, id, time, key_id, endpoint, level, strategy, outcome, record->>'language', "
           "coalesce((SELECT string_agg(c->>'id', ' ') FROM jsonb_array_elements("
           "record->'categories') AS c), ''), coalesce(jsonb_array_length(record->'attacks'), 0),"
           " (record->>'latency_ms')::float8, status")
_PG_DECIDED = "strategy IS NOT NULL"
_PG_BUCKETS = ", ".join(
    ["count(*) FILTER (WHERE strategy IS NULL)"]
    + [f"count(*) FILTER (WHERE strategy = '{s}')" for s in STRATEGIES]
    + [f"count(*) FILTER (WHERE {_PG_DECIDED} AND "
       "coalesce(jsonb_array_length(record->'attacks'), 0) > 0)",
       f"count(*) FILTER (WHERE {_PG_DECIDED} AND outcome = 'regenerated')",
       f"count(*) FILTER (WHERE {_PG_DECIDED} AND "
       "coalesce((record->>'fallback_used')::boolean, false))",
       # the nearest rank, as SQLite's reader computes it
       "percentile_disc(0.95) WITHIN GROUP (ORDER BY (record->>'latency_ms')::float8) "
       f"FILTER (WHERE {_PG_DECIDED})"])
_EXPORT_BATCH = 1000


def _pg_where(where: AuditFilter) -> tuple[str, list[object]]:
    """The filter as SQL over the proxy's `decisions` table (the category test is answered
    by the GIN index on the categories)."""
    return _filter_sql(where, "", "record->>'language' = ?", "record->'categories' @> ?::jsonb",
                       lambda c: json.dumps([{"id": c}]), "TRUE")


class PostgresAuditQuery(AuditQuery):
    """The console's reader of a PostgreSQL audit log (see the module docstring). Each call
    uses a connection of its own, read-only. Facets and chart aggregates are kept until the
    table changes (its row count or last sequence number)."""

    MIN_SCHEMA = 2  # nullable level/strategy and the status column

    def __init__(self, location: str | Location, chart_cache: int = 16) -> None:
        self.location = (location if isinstance(location, Location)
                         else parse_location(location, "audit log"))
        if self.location.kind != "postgresql":
            raise AuditError(f"{self.location}: not a PostgreSQL URL")
        self._kept_results = _KeptResults(chart_cache)
        self._checked = False

    @contextmanager
    def _reading(self) -> Iterator[_PgReader]:
        reader = _PgReader(AuditReader(self.location))
        try:
            if not self._checked:
                self._check_schema(reader)
            yield reader
        finally:
            reader.close()

    def _check_schema(self, db: _PgReader) -> None:
        (versioned,) = db.one("SELECT to_regclass('oyster_schema') IS NOT NULL", [])
        found = db.all("SELECT version FROM oyster_schema WHERE component = ?",
                       [audit.COMPONENT]) if versioned else []
        if not found:
            raise AuditError(f"{self.location}: no audit log here yet")
        if int(found[0][0]) < self.MIN_SCHEMA:
            raise AuditError(f"{self.location}: the audit schema is at version {found[0][0]}; "
                             "bring it up to date with `oyster serve migrate --audit-db URL`")
        self._checked = True

    def page(self, where: AuditFilter, before: int | None = None, after: int | None = None,
             limit: int = 50) -> AuditPage:
        sql, args = _pg_where(where)
        with self._reading() as db:
            (total,) = db.one(f"SELECT count(*) FROM decisions WHERE {sql}", args)
            if after is not None:
                found = db.all(f"SELECT {_PG_ROW} FROM decisions WHERE {sql} AND seq > ? "
                               "ORDER BY seq ASC LIMIT ?", [*args, after, limit + 1])
                more_newer = len(found) > limit
                rows = [_row(r) for r in found[:limit]][::-1]
                more_older = bool(rows) and db.exists(sql, args, "<", rows[-1].seq)
            else:
                cursor = [before] if before is not None else []
                found = db.all(f"SELECT {_PG_ROW} FROM decisions WHERE {sql}"
                               + (" AND seq < ?" if before is not None else "")
                               + " ORDER BY seq DESC LIMIT ?", [*args, *cursor, limit + 1])
                more_older = len(found) > limit
                rows = [_row(r) for r in found[:limit]]
                more_newer = bool(rows) and db.exists(sql, args, ">", rows[0].seq)
        return AuditPage(rows=rows, total=int(total),
                         older=rows[-1].seq if more_older else None,
                         newer=rows[0].seq if more_newer else None)

    def record(self, id: str) -> AuditRecord | None:
        with self._reading() as db:
            found = db.all("SELECT record FROM decisions WHERE id = ?", [id])
        return AuditRecord.model_validate(found[0][0]) if found else None

    def records(self, where: AuditFilter) -> Iterator[AuditRecord]:
        # in batches by sequence number: an export of millions of rows never sits in memory
        sql, args = _pg_where(where)
        last = -1
        with self._reading() as db:
            while True:
                batch = db.all(f"SELECT seq, record FROM decisions WHERE {sql} AND seq > ? "
                               "ORDER BY seq LIMIT ?", [*args, last, _EXPORT_BATCH])
                for _, data in batch:
                    yield AuditRecord.model_validate(data)
                if len(batch) < _EXPORT_BATCH:
                    return
                last = int(batch[-1][0])

    def _kept(self, db: _PgReader, name: str, compute: Callable[[], T]) -> T:
        stamp = db.one("SELECT count(*), coalesce(max(seq), 0) FROM decisions", [])
        return self._kept_results.get(name, stamp, compute)

    def buckets(self, where: AuditFilter, unit: BucketUnit) -> list[TimeBucket]:
        sql, args = _pg_where(where)
        width = BUCKET_SECONDS[unit]

        def count() -> list[TimeBucket]:
            out = []
            for b, undecided, *counts in db.all(
                    f"SELECT floor(time / {width})::bigint, {_PG_BUCKETS} FROM decisions "
                    f"WHERE {sql} GROUP BY 1 ORDER BY 1", args):
                by_strategy = dict(zip(STRATEGIES, counts[:len(STRATEGIES)], strict=True))
                attacked, regenerated, fallbacks, p95 = counts[len(STRATEGIES):]
                out.append(TimeBucket(
                    start=float(b * width), decisions=sum(by_strategy.values()),
                    undecided=undecided, strategies=by_strategy,
                    refusals=by_strategy["refuse"], with_attacks=attacked,
                    regenerated=regenerated, fallbacks=fallbacks, p95_latency_ms=p95))
            return out

        with self._reading() as db:
            return self._kept(db, f"buckets {unit} {where.model_dump_json()}", count)

    def facets(self) -> Facets:
        def look() -> Facets:
            rows, first, last = db.one("SELECT count(*), min(time), max(time) FROM decisions",
                                       [])
            keys = [k for (k,) in db.all("SELECT DISTINCT key_id FROM decisions WHERE key_id "
                                         "IS NOT NULL ORDER BY 1", [])]
            categories = [c for (c,) in db.all(
                "SELECT DISTINCT c->>'id' FROM decisions, jsonb_array_elements("
                "record->'categories') AS c ORDER BY 1", [])]
            languages = [lang for (lang,) in db.all(
                "SELECT DISTINCT record->>'language' FROM decisions WHERE record->>'language' "
                "IS NOT NULL ORDER BY 1", [])]
            return Facets(rows=int(rows), keys=keys, categories=categories,
                          languages=languages, first=first, last=last)

        with self._reading() as db:
            return self._kept(db, "facets", look)


class _PgReader:
    """Plain helpers over one read-only PostgreSQL connection."""

    def __init__(self, reader: AuditReader) -> None:
        self.reader = reader

    def all(self, sql: str, args: list[Any]) -> list[tuple[Any, ...]]:
        return list(self.reader.rows(sql, tuple(args)))

    def one(self, sql: str, args: list[Any]) -> tuple[Any, ...]:
        return self.all(sql, args)[0]

    def exists(self, sql: str, args: list[object], op: str, seq: int) -> bool:
        return bool(self.all(f"SELECT 1 FROM decisions WHERE {sql} AND seq {op} ? LIMIT 1",
                             [*args, seq]))

    def close(self) -> None:
        self.reader.close()
