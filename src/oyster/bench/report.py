"""Reports: one self-contained HTML file (tables + inline SVG plots) comparing runs side by
side, and a terminal summary. Each benchmark brings its own section (`Benchmark.report_section`,
`Benchmark.terminal_rows`); the parts they are built from are in `oyster.bench.sections`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from oyster.bench.benchmark import BENCHMARKS, benchmark
from oyster.bench.metrics import RunSummary, run_summary
from oyster.bench.records import RunDir
from oyster.bench.sections import (
    CSS,
    LoadedRun,
    anchors,
    esc,
    examples_section,
    mix_section,
    runs_section,
)
from oyster.errors import InputError


def load_run(path: Path) -> LoadedRun:
    run_dir = RunDir(path)
    meta = run_dir.meta()
    records = run_dir.records()
    return LoadedRun(meta, records, run_summary(benchmark(meta.benchmark), meta.label, records))


def render_html(runs: Sequence[LoadedRun], anchors_on: bool = True,
                title: str = "Oyster benchmark report") -> str:
    judges = sorted({r.meta.judges for r in runs})
    sections = [b.report_section(runs, anchors_on)
                for b in map(benchmark, BENCHMARKS.names()) if b.report_section]
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='generator' content='oyster report'><title>{esc(title)}"
             f"</title><style>{CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1>",
             f"<p class='note'>Generated {datetime.now(UTC).isoformat(timespec='seconds')} by "
             f"`oyster report` from {len(runs)} run(s). Judges: {esc(', '.join(judges))}. "
             + ("Hatched bars and italic rows marked “published” are the paper's figures "
                f"({esc(anchors().source)}), not our runs." if anchors_on else "") + "</p>",
             runs_section(runs), *sections, mix_section(runs), examples_section(runs),
             "</body></html>"]
    return "\n".join(p for p in parts if p)


def write_report(run_dirs: Sequence[Path], out: Path, anchors: bool = True,
                 title: str = "Oyster benchmark report") -> Path:
    if not run_dirs:
        raise InputError("report: give at least one run directory")
    runs = [load_run(Path(p)) for p in run_dirs]
    # Columns are "label · system" within a benchmark's section: two runs clash only when
    # they share all three (e.g. two directories of the same name); number those.
    keys = [{(r.meta.benchmark, r.meta.label, s) for s in r.summary.systems} for r in runs]
    for i, run in enumerate(runs):
        if any(keys[i] & other for j, other in enumerate(keys) if j != i):
            run.meta = run.meta.model_copy(update={"label": f"{run.meta.label} ({i + 1})"})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(runs, anchors, title), "utf-8")
    return out


def print_summary(summary: RunSummary) -> None:
    """A short terminal view of a run's numbers."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{summary.benchmark} · {summary.label}")
    t.add_column("")
    for system in summary.systems:
        t.add_column(system, justify="right")
    ss = list(summary.systems.values())
    rows = [("replies", [str(s.n) for s in ss]), ("errors", [str(s.errors) for s in ss])]
    rows_of = benchmark(summary.benchmark).terminal_rows
    for name, values in rows + (rows_of(ss) if rows_of else []):
        t.add_row(name, *values)
    Console().print(t)
