"""A benchmark as a thing you can point at: its dataset, the judges it needs, how it
summarises a system's records and the section it adds to a report. `oyster bench NAME`,
the runner, the summary and the report all read the `BENCHMARKS` registry, so a new benchmark
is one registration:

    from oyster.bench.benchmark import BENCHMARKS, Benchmark

    @BENCHMARKS.register("my-bench")
    def _my_bench() -> Benchmark:
        return Benchmark(name="my-bench", help="...", needs=("refusal",), load=my_loader,
                         default_data="package:my_prompts.jsonl")

| benchmark | judges |
|---|---|
| `strata-sword` | safety (attack success), refusal type |
| `constructive` | satisfaction + safety against the item's category guideline → C_β; refusal |
| `over-refusal` | refusal type (and the engine's decisions) |

Factories import their parts when called, so listing the benchmarks costs nothing until one
is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from oyster.errors import InputError
from oyster.registry import Registry

if TYPE_CHECKING:
    from pydantic import BaseModel

    from oyster.bench.datasets import BenchItem
    from oyster.bench.metrics import SystemSummary
    from oyster.bench.records import ResultRecord
    from oyster.bench.sections import LoadedRun

JudgeKind = Literal["refusal", "safety", "satisfaction"]
TerminalRows = list[tuple[str, list[str]]]


@dataclass(frozen=True)
class NoFilters:
    """The options of a benchmark that has none of its own."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark.

    `load(path, **filters)` reads the dataset: `path` is what `--data` gave, or None for
    `default_data` (a `package:NAME` starter set; a benchmark without one needs `--data`).
    `filters` is a dataclass of the benchmark's own command-line options (typer-annotated
    fields), passed to `load` by name. With `cell`, `--limit N` keeps the first N items of every
    cell (so a small run still covers each), else the first N items.
    `summarise` turns one system's records into the model stored on `SystemSummary` under
    `summary_field`; `report_section(runs, anchors_on)` is its HTML section, `terminal_rows`
    its rows in the terminal summary."""

    name: str
    help: str
    needs: tuple[JudgeKind, ...]
    load: Callable[..., list[BenchItem]]
    default_data: str | None = None
    data_help: str = "JSONL of prompts"
    data_is_dir: bool = False
    filters: type = NoFilters
    cell: Callable[[BenchItem], str] | None = None
    summarise: Callable[[Sequence[ResultRecord]], BaseModel] | None = None
    summary_field: str | None = None
    report_section: Callable[[Sequence[LoadedRun], bool], str] | None = None
    terminal_rows: Callable[[Sequence[SystemSummary]], TerminalRows] | None = None

    def items(self, data: str | Path | None, limit: int | None = None,
              filters: Any = None) -> list[BenchItem]:
        """The items a run sends: the dataset (`data`, or the default), filtered and limited."""
        if data is None and self.default_data is None:
            raise InputError(f"benchmark {self.name!r} needs its data (--data)")
        chosen = (asdict(filters) if is_dataclass(filters) and not isinstance(filters, type)
                  else {})
        items = self.load(data, **chosen)
        if not limit:
            return items
        if self.cell is None:
            return items[:limit]
        per: dict[str, int] = {}
        kept = []
        for it in items:
            key = self.cell(it)
            per[key] = per.get(key, 0) + 1
            if per[key] <= limit:
                kept.append(it)
        return kept

    def data_name(self, data: str | Path | None) -> str:
        """How a run names its data in `run.json` (the default as `package:NAME`)."""
        return str(data) if data is not None else str(self.default_data)

    def stored_items(self, data: str) -> list[BenchItem]:
        """The dataset a run names in its `run.json`."""
        return self.load(None if data.startswith("package:") else data)


BENCHMARKS: Registry[Benchmark] = Registry("benchmark", InputError)


def benchmark(name: str) -> Benchmark:
    """The benchmark registered as `name`; an unknown name gets an error listing the others."""
    return BENCHMARKS.build(name)


# --- the built-in benchmarks ------------------------------------------------------------------


@dataclass(frozen=True)
class StrataFilters:
    levels: Annotated[str | None, typer.Option(
        "--levels", help="e.g. 1,2 (default: all files)")] = None
    languages: Annotated[str | None, typer.Option("--languages", help="e.g. en,zh")] = None


@BENCHMARKS.register("strata-sword")
def _strata_sword() -> Benchmark:
    from oyster.bench.datasets import load_strata_sword
    from oyster.bench.metrics import attack_summary
    from oyster.bench.sections import strata_rows, strata_section

    def load(data: str | Path, levels: str | None = None, languages: str | None = None
             ) -> list[BenchItem]:
        try:
            lv = {int(x) for x in levels.split(",")} if levels else None
        except ValueError as e:
            raise InputError(f"--levels: {e}") from None
        langs = ({x.strip().replace("cn", "zh") for x in languages.split(",")} if languages
                 else None)
        return load_strata_sword(data, lv, langs)

    return Benchmark(
        name="strata-sword",
        help="Strata-Sword jailbreak prompts: attack success rate per language × level and per "
             "attack method. With --limit N, the first N prompts of each (language, level) file.",
        needs=("safety", "refusal"), load=load,
        data_help="directory of strata_sword_<lang>_level_<N>.xlsx files", data_is_dir=True,
        filters=StrataFilters, cell=lambda it: f"{it.language}/{it.level}",
        summarise=attack_summary, summary_field="attack", report_section=strata_section,
        terminal_rows=strata_rows)


@BENCHMARKS.register("constructive")
def _constructive() -> Benchmark:
    from oyster.bench.datasets import CONSTRUCTIVE_STARTER, load_constructive
    from oyster.bench.metrics import constructive_summary
    from oyster.bench.sections import constructive_rows, constructive_section

    return Benchmark(
        name="constructive",
        help="Constructive benchmark: satisfaction, safety and C_β for β in 0.1 … 10, per level "
             "and per category (headline: β = 2, ×100).",
        needs=("satisfaction", "safety", "refusal"), load=load_constructive,
        default_data=f"package:{CONSTRUCTIVE_STARTER}",
        data_help="constructive JSONL (default: our starter set)",
        summarise=constructive_summary, summary_field="constructive",
        report_section=constructive_section, terminal_rows=constructive_rows)


@BENCHMARKS.register("over-refusal")
def _over_refusal() -> Benchmark:
    from oyster.bench.datasets import OVER_REFUSAL_STARTER, load_prompts
    from oyster.bench.metrics import over_refusal_summary
    from oyster.bench.sections import over_refusal_rows, over_refusal_section

    return Benchmark(
        name="over-refusal",
        help="Over-refusal on benign prompts that sound risky: share of hard_refusal / "
             "constructive replies, and of refuse / guide decisions behind the engine.",
        needs=("refusal",), load=load_prompts,
        default_data=f"package:{OVER_REFUSAL_STARTER}",
        data_help="JSONL of benign prompts that sound risky (default: our starter set)",
        summarise=over_refusal_summary, summary_field="over_refusal",
        report_section=lambda runs, _anchors_on: over_refusal_section(runs),
        terminal_rows=over_refusal_rows)
