"""The console's audit browser on a large log: filter + page, charts, and the whole page.

    .venv/bin/python benchmarks/console_audit.py [--rows 100000] [--repeat 20]
        [--store sqlite|postgresql] [--pg-url URL]

Builds an audit log of synthetic rows through the proxy's own writer (a week of traffic) in
SQLite or PostgreSQL (`--pg-url`, or a throw-away server started here), then times, for a
set of filters:
- `page`: one page of 50 rows newest first with the total count (`AuditQuery.page`), first
  page and a page ten pages deep (cursor paging);
- `buckets`: the per-hour aggregates behind the five charts (`AuditQuery.buckets`);
- `first view`: GET /console/audit end to end (facets, page, buckets, charts, HTML) over
  real HTTP to uvicorn on 127.0.0.1, chart aggregates computed afresh each time;
- `next page`: the same page one cursor older, the filter's chart aggregates kept from the
  first view (what paging costs).
SQLite's side index is built once before the timings (its build time is reported). Prints a
table and writes JSON (default: benchmarks/results/console_audit[-postgresql].json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from oyster.engine import Engine
from oyster.serve.console.app import ConsoleConfig, create_console_app, filter_query
from oyster.serve.console.auditquery import (
    AuditFilter,
    AuditQuery,
    PostgresAuditQuery,
    SqliteAuditQuery,
)
from oyster.serve.console.samples import write_synthetic_log
from oyster.serve.testing import ServerThread

sys.path.insert(0, str(Path(__file__).parent))
from proxy_load import fresh_pg_schema, throwaway_postgres

START = 1_780_000_000.0
FILTERS: dict[str, AuditFilter] = {
    "none": AuditFilter(),
    "strategy=refuse": AuditFilter(strategies=("refuse",)),
    "level=R2, lang=zh": AuditFilter(levels=("R2",), language="zh"),
    "category=mental_health": AuditFilter(category="mental_health"),
    "category+strategy+key": AuditFilter(category="cybersecurity", strategies=("refuse",),
                                         key="clinic-app"),
    "one day, outcome=fallback": AuditFilter(since=START + 2 * 86400, until=START + 3 * 86400,
                                             outcomes=("fallback",)),
    "key=batch-eval": AuditFilter(key="batch-eval"),
}


def timed(fn: Any, repeat: int) -> tuple[float, float, Any]:
    """p50 and p95 milliseconds over `repeat` calls, and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, round(0.95 * len(times)) - 1)], result


def deep_page(query: AuditQuery, where: AuditFilter, depth: int = 10) -> Any:
    page = query.page(where)
    for _ in range(depth):
        if page.older is None:
            break
        page = query.page(where, before=page.older)
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", help="PostgreSQL server for --store postgresql (a new "
                        "schema is made there); default: a throw-away server started here")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path("benchmarks/results/console_audit"
                           + ("" if args.store == "sqlite" else "-postgresql") + ".json")

    with tempfile.TemporaryDirectory() as tmp:
        pg = None
        if args.store == "postgresql" and not args.pg_url:
            pg = throwaway_postgres(Path(tmp))
            args.pg_url = pg.url
        try:
            rows, meta = run(args, Path(tmp))
        finally:
            if pg is not None:
                pg.stop()
    report(args, rows, meta, out)


def run(args: argparse.Namespace, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    engine = Engine(assessor="lexicon")
    location = (str(tmp / "audit.db") if args.store == "sqlite"
                else fresh_pg_schema(args.pg_url, "console_bench"))
    t = time.perf_counter()
    write_synthetic_log(location, engine.policy, args.rows, start=START, days=7)
    write_s = time.perf_counter() - t
    query: AuditQuery
    uncached: AuditQuery
    if args.store == "sqlite":
        query, uncached = SqliteAuditQuery(location), SqliteAuditQuery(location, chart_cache=0)
    else:
        query, uncached = (PostgresAuditQuery(location),
                           PostgresAuditQuery(location, chart_cache=0))
    t = time.perf_counter()
    facets = query.facets()  # SQLite: builds the side index
    index_s = time.perf_counter() - t
    assert facets.rows == args.rows
    meta: dict[str, Any] = {"write_s": write_s, "first_facets_s": index_s}
    if isinstance(query, SqliteAuditQuery):
        meta |= {"log_mb": Path(location).stat().st_size / 1e6,
                 "index_mb": query.index_path.stat().st_size / 1e6}
    fresh_app = create_console_app(ConsoleConfig(engine=engine, audit=uncached,
                                                 audit_source=args.store))
    paging_app = create_console_app(ConsoleConfig(engine=engine, audit=query,
                                                  audit_source=args.store))
    rows = []
    with ServerThread(fresh_app) as fresh, ServerThread(paging_app) as paging, \
            httpx.Client(timeout=60) as http:
        for name, where in FILTERS.items():
            p50, p95, page = timed(lambda w=where: query.page(w), args.repeat)
            deep50, _, _ = timed(lambda w=where: deep_page(query, w), 3)
            b50, _, buckets = timed(lambda w=where: uncached.buckets(w, "hour"), 5)
            first = f"/console/audit?{filter_query(where)}"
            h50, h95, _ = timed(lambda u=first: http.get(fresh.url + u).raise_for_status(), 5)
            older = f"/console/audit?{filter_query(where, before=page.older)}"
            http.get(paging.url + older).raise_for_status()
            n50, _, _ = timed(lambda u=older: http.get(paging.url + u).raise_for_status(), 5)
            rows.append({"filter": name, "matching": page.total, "page_p50_ms": p50,
                         "page_p95_ms": p95, "deep_page_11_ms_p50": deep50 / 11,
                         "buckets": len(buckets), "buckets_p50_ms": b50,
                         "http_first_view_p50_ms": h50, "http_first_view_p95_ms": h95,
                         "http_next_page_p50_ms": n50})
    return rows, meta


def report(args: argparse.Namespace, rows: list[dict[str, Any]], meta: dict[str, Any],
           out: Path) -> None:
    how = "SQLite, side index" if args.store == "sqlite" else "PostgreSQL, its own table"
    table = Table(title=f"Audit browser on {args.rows:,} rows ({how})")
    for col in ("filter", "matching", "page p50 ms", "page p95 ms", "deep page ms",
                "charts p50 ms", "first view p50 ms", "next page p50 ms"):
        table.add_column(col, justify="left" if col == "filter" else "right")
    for r in rows:
        table.add_row(r["filter"], f"{r['matching']:,}", f"{r['page_p50_ms']:.1f}",
                      f"{r['page_p95_ms']:.1f}", f"{r['deep_page_11_ms_p50']:.1f}",
                      f"{r['buckets_p50_ms']:.1f}", f"{r['http_first_view_p50_ms']:.1f}",
                      f"{r['http_next_page_p50_ms']:.1f}")
    console = Console()
    console.print(table)
    overall = statistics.median(r["page_p50_ms"] for r in rows)
    sizes = (f"; log {meta['log_mb']:.0f} MB, index {meta['index_mb']:.0f} MB"
             if "log_mb" in meta else "")
    console.print(f"writing {args.rows:,} rows: {meta['write_s']:.1f} s; first facets "
                  f"(SQLite: builds the side index): {meta['first_facets_s']:.1f} s{sizes}; "
                  f"median over filters of page p50: {overall:.1f} ms")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "rows": args.rows, "repeat": args.repeat, "store": args.store, **meta,
        "filters": rows,
        "command": " ".join(["python", "benchmarks/console_audit.py", *sys.argv[1:]]),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_1m_at_end": os.getloadavg()[0]},
    }, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
