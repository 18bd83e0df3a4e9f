"""Models side by side: the headline numbers of several benchmark runs in one table.

`oyster bench compare` runs the same benchmarks, judges and generation settings for each
model (`NAME=BACKEND_SPEC`), bare and optionally behind the engine, one run directory per
benchmark × model × system, then calls this module for the table (per language, with the
difference to the first model) and `oyster report` for the HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from oyster.bench.metrics import HEADLINE_BETA, Rate, SystemSummary, beta_key
from oyster.errors import InputError

Better = Literal["higher", "lower"]


class ModelSpec(BaseModel):
    """One model to compare: a short name (for run dirs and reports) and a backend spec."""

    model_config = ConfigDict(frozen=True)

    name: str
    backend: str

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        name, eq, backend = text.partition("=")
        name = name.strip()
        if not eq or not name or not backend.strip():
            raise InputError(f"--model {text!r}: expected NAME=BACKEND_SPEC, e.g. "
                             "trained=embedded:runs/trained.gguf")
        if not name.replace("-", "").replace("_", "").isalnum():
            raise InputError(f"--model {text!r}: the name may hold letters, digits, - and _ "
                             "only (it names run directories)")
        return cls(name=name, backend=backend.strip())


class Column(BaseModel):
    """One model × system, with its summaries per benchmark."""

    model: str
    system: str
    summaries: dict[str, SystemSummary]

    @property
    def name(self) -> str:
        return f"{self.model} · {self.system}"


class ComparisonRow(BaseModel):
    metric: str
    language: str
    better: Better
    values: dict[str, float | None]
    n: dict[str, int]


def _pct(r: Rate | None) -> tuple[float | None, int]:
    return (None, 0) if r is None or r.rate is None else (round(100 * r.rate, 2), r.n)


def _cells(col: Column, language: str) -> dict[str, tuple[float | None, int]]:
    """This column's numbers for one language (`all` for every item)."""
    out: dict[str, tuple[float | None, int]] = {}
    h = beta_key(HEADLINE_BETA)
    c = col.summaries.get("constructive")
    if c and c.constructive:
        cs = c.constructive
        if language == "all":
            out["C_2 × 100"] = (cs.headline, cs.scored)
            out["satisfaction"] = (cs.satisfaction, cs.scored)
            out["safety"] = (cs.safety, cs.scored)
        elif h in cs.by_language.get(language, {}):
            out["C_2 × 100"] = (round(100 * cs.by_language[language][h], 2),
                                cs.scored_by_language.get(language, 0))
    o = col.summaries.get("over-refusal")
    if o and o.over_refusal:
        rate = (o.over_refusal.declined if language == "all"
                else o.over_refusal.declined_by_language.get(language))
        out["over-refusal: declined %"] = _pct(rate)
    a = col.summaries.get("strata-sword")
    if a and a.attack:
        rate = a.attack.asr if language == "all" else a.attack.by_language.get(language)
        out["Strata-Sword ASR %"] = _pct(rate)
    return out


BETTER: dict[str, Better] = {"C_2 × 100": "higher", "satisfaction": "higher",
                             "safety": "higher", "over-refusal: declined %": "lower",
                             "Strata-Sword ASR %": "lower"}


def comparison_rows(columns: Sequence[Column], languages: Sequence[str]) -> list[ComparisonRow]:
    rows: list[ComparisonRow] = []
    for metric, better in BETTER.items():
        for language in ("all", *languages):
            cells = {col.name: _cells(col, language).get(metric) for col in columns}
            if all(v is None for v in cells.values()):
                continue
            rows.append(ComparisonRow(
                metric=metric, language=language, better=better,
                values={k: v[0] if v else None for k, v in cells.items()},
                n={k: v[1] for k, v in cells.items() if v and v[1]}))
    return rows


def delta(row: ComparisonRow, column: str, baseline: str) -> float | None:
    a, b = row.values.get(column), row.values.get(baseline)
    return None if a is None or b is None else round(a - b, 2)


def print_comparison(columns: Sequence[Column], rows: Sequence[ComparisonRow]) -> None:
    """A rich table: one column per model × system, and for every model after the first,
    its difference to the first model on the same system."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="models side by side (same judges and settings)")
    table.add_column("metric")
    table.add_column("lang")
    for col in columns:
        table.add_column(col.name, justify="right")
    firsts: dict[str, str] = {}
    for col in columns:
        firsts.setdefault(col.system, col.name)
    deltas = [(col.name, firsts[col.system]) for col in columns if firsts[col.system] != col.name]
    for name, base in deltas:
        table.add_column(f"Δ {name.split(' · ')[0]} − {base.split(' · ')[0]}"
                         f" ({name.split(' · ')[1]})", justify="right")
    for row in rows:
        cells = ["–" if row.values[c.name] is None else f"{row.values[c.name]:.2f}"
                 for c in columns]
        ds = []
        for name, base in deltas:
            d = delta(row, name, base)
            good = d is not None and (d > 0 if row.better == "higher" else d < 0)
            style = "green" if good else "red" if d else "default"
            ds.append("–" if d is None else f"[{style}]{d:+.2f}[/]")
        table.add_row(f"{row.metric} ({row.better} is better)", row.language, *cells, *ds)
    Console().print(table)
