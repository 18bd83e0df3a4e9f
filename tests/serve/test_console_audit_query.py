"""The console's audit queries against a brute-force reading of the same log, on SQLite and
on PostgreSQL (a real server): every filter, paging in both directions, per-hour/day
aggregates with p95, export order, rows of rejected requests; and SQLite's side index kept
in step with a log that grows or is replaced."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path

import pytest

from oyster.serve.audit import AuditLog, AuditRecord, export
from oyster.serve.console.auditquery import (
    AuditFilter,
    PostgresAuditQuery,
    SqliteAuditQuery,
    audit_query,
)
from oyster.serve.console.samples import synthetic_records, write_synthetic_log
from oyster.taxonomy.policy import load_policy

START = 1_780_000_000.0
POLICY = load_policy()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def log(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> tuple[str, list[AuditRecord]]:
    location = (str(tmp_path_factory.mktemp("audit") / "audit.db") if request.param == "sqlite"
                else request.getfixturevalue("module_pg_url"))
    write_synthetic_log(location, POLICY, 1500, start=START, days=3, seed=7)
    # rows without a key (auth off) and without a language (written before it was recorded)
    with AuditLog(location) as writer:
        for r in synthetic_records(POLICY, 20, start=START + 3 * 86400, days=0.1, seed=8,
                                   keys=()):
            writer.append(r.model_copy(update={"language": None}))
    rows = list(export(location))
    assert any(r.outcome == "rejected" and r.strategy is None for r in rows)
    return location, rows


def matches(r: AuditRecord, f: AuditFilter) -> bool:
    return ((f.since is None or r.time >= f.since) and (f.until is None or r.time < f.until)
            and (not f.strategies or r.strategy in f.strategies)
            and (not f.levels or r.level in f.levels)
            and (not f.outcomes or r.outcome in f.outcomes)
            and (f.category is None or any(c.id == f.category for c in r.categories))
            and (f.language is None or r.language == f.language)
            and (f.key is None or r.key_id == (None if f.key == "-" else f.key)))


FILTERS = [
    AuditFilter(),
    AuditFilter(strategies=("refuse",)),
    AuditFilter(strategies=("guide", "refuse"), language="zh"),
    AuditFilter(levels=("R2",), outcomes=("fallback", "regenerated")),
    AuditFilter(category="mental_health"),
    AuditFilter(category="cybersecurity", strategies=("refuse",), key="clinic-app"),
    AuditFilter(key="-"),
    AuditFilter(since=START + 86400, until=START + 2 * 86400, levels=("R1",)),
    AuditFilter(category="no_such_category"),
    AuditFilter(outcomes=("rejected",)),
]


@pytest.mark.parametrize("where", FILTERS, ids=lambda f: f.model_dump_json(exclude_defaults=True))
def test_paging_newest_first_visits_exactly_the_matching_rows(log, where):
    path, rows = log
    query = audit_query(path)
    expected = [r.id for r in sorted((r for r in rows if matches(r, where)),
                                     key=lambda r: -r.time)]
    seen: list[str] = []
    pages = []
    page = query.page(where, limit=40)
    while True:
        assert page.total == len(expected)
        pages.append(page)
        seen += [r.id for r in page.rows]
        if page.older is None:
            break
        page = query.page(where, before=page.older, limit=40)
    assert seen == expected
    assert pages[0].newer is None
    # and back: each page's `newer` cursor returns the page before it
    for previous, current in itertools.pairwise(pages):
        assert current.newer is not None
        back = query.page(where, after=current.newer, limit=40)
        assert [r.id for r in back.rows] == [r.id for r in previous.rows]


@pytest.mark.parametrize("where", FILTERS[:6], ids=lambda f: f.model_dump_json(
    exclude_defaults=True))
def test_export_gives_every_matching_record_in_log_order(log, where):
    path, rows = log
    assert [r.id for r in audit_query(path).records(where)] == [
        r.id for r in rows if matches(r, where)]


def nearest_rank_p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


@pytest.mark.parametrize("where", [AuditFilter(levels=("R1", "R2")), AuditFilter()],
                         ids=["R1+R2", "all"])
@pytest.mark.parametrize("unit,width", [("hour", 3600), ("day", 86400)])
def test_buckets_count_mix_refusals_attacks_regenerations_and_p95(log, unit, width, where):
    path, rows = log
    chosen = [r for r in rows if matches(r, where)]
    by_bucket: dict[int, list[AuditRecord]] = {}
    for r in chosen:
        by_bucket.setdefault(int(r.time // width), []).append(r)
    buckets = audit_query(path).buckets(where, unit)
    assert [int(b.start // width) for b in buckets] == sorted(by_bucket)
    for b in buckets:
        everything = by_bucket[int(b.start // width)]
        group = [r for r in everything if r.strategy is not None]  # rejected: no decision
        assert b.undecided == len(everything) - len(group)
        assert b.decisions == len(group)
        assert b.strategies == {s: Counter(r.strategy for r in group)[s] for s in b.strategies}
        assert b.refusals == sum(r.strategy == "refuse" for r in group)
        assert b.with_attacks == sum(bool(r.attacks) for r in group)
        assert b.regenerated == sum(r.outcome == "regenerated" for r in group)
        assert b.fallbacks == sum(r.fallback_used for r in group)
        assert b.p95_latency_ms == (pytest.approx(nearest_rank_p95([r.latency_ms for r in group]))
                                    if group else None)


def test_a_row_is_found_by_id_rejected_ones_included(log):
    path, rows = log
    query = audit_query(path)
    rejected = next(r for r in rows if r.outcome == "rejected")
    assert query.record(rejected.id) == rejected
    assert query.record(rows[5].id) == rows[5]
    assert query.record("no-such-id") is None


def test_facets_list_what_the_log_holds(log):
    path, rows = log
    facets = audit_query(path).facets()
    assert facets.rows == len(rows)
    assert facets.keys == sorted({r.key_id for r in rows if r.key_id})
    assert facets.categories == sorted({c.id for r in rows for c in r.categories})
    assert facets.languages == ["en", "zh"]
    assert (facets.first, facets.last) == (min(r.time for r in rows), max(r.time for r in rows))


def test_the_index_follows_a_growing_log_and_a_replaced_one(tmp_path):
    path = tmp_path / "audit.db"
    write_synthetic_log(path, POLICY, 30, start=START, seed=1)
    query = SqliteAuditQuery(path)
    assert query.page(AuditFilter()).total == 30
    assert sum(b.decisions + b.undecided for b in query.buckets(AuditFilter(), "day")) == 30
    write_synthetic_log(path, POLICY, 5, start=START + 10 * 86400, seed=2)  # the proxy appends
    assert query.page(AuditFilter()).total == 35
    assert sum(b.decisions + b.undecided for b in query.buckets(AuditFilter(), "day")) == 35
    assert query.index_path == tmp_path / "audit.db.console-index"
    # a different log now lives at the same path (rotated): the index is rebuilt, not mixed
    path.unlink()
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
    write_synthetic_log(path, POLICY, 40, start=START, seed=3)
    assert query.page(AuditFilter()).total == 40
    assert {r.id for r in query.records(AuditFilter())} == {r.id for r in export(path)}


def test_the_sqlite_log_is_opened_read_only(tmp_path):
    path = write_synthetic_log(tmp_path / "audit.db", POLICY, 50, start=START, seed=4)
    rows = list(export(path))
    before = path.read_bytes()
    query = SqliteAuditQuery(path)
    assert query.page(AuditFilter()).total == 50
    assert query.record(rows[5].id) == rows[5]
    assert path.read_bytes() == before  # only the side index was written


def test_a_missing_log_is_a_clear_error(tmp_path):
    from oyster.serve.audit import AuditError

    with pytest.raises(AuditError, match="no audit log here yet"):
        SqliteAuditQuery(tmp_path / "none.db").page(AuditFilter())


def test_postgres_answers_follow_a_growing_table(pg_url):
    write_synthetic_log(pg_url, POLICY, 30, start=START, seed=1)
    query = audit_query(pg_url)
    assert isinstance(query, PostgresAuditQuery)
    assert query.facets().rows == query.page(AuditFilter()).total == 30
    before = sum(b.decisions + b.undecided for b in query.buckets(AuditFilter(), "day"))
    assert before == 30
    write_synthetic_log(pg_url, POLICY, 5, start=START + 10 * 86400, seed=2)  # the proxy appends
    assert query.facets().rows == 35  # kept answers are not reused for a changed table
    assert sum(b.decisions + b.undecided for b in query.buckets(AuditFilter(), "day")) == 35


def test_postgres_without_an_audit_log_or_with_an_old_schema_is_a_clear_error(pg_url):
    import psycopg

    from oyster.serve.audit import MIGRATIONS, AuditError

    with pytest.raises(AuditError, match="no audit log here yet"):
        audit_query(pg_url).page(AuditFilter())
    with psycopg.connect(pg_url, autocommit=True) as conn:  # a table of audit schema v1
        for statement in MIGRATIONS[0].postgresql.split(";"):
            conn.execute(statement)
        conn.execute("CREATE TABLE oyster_schema (component TEXT PRIMARY KEY, version INTEGER "
                     "NOT NULL, updated DOUBLE PRECISION NOT NULL)")
        conn.execute("INSERT INTO oyster_schema VALUES ('audit', 1, 0)")
    with pytest.raises(AuditError, match="oyster serve migrate"):
        audit_query(pg_url).page(AuditFilter())
