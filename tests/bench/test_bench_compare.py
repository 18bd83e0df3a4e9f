"""`oyster bench compare`: several models on the same benchmarks, judges and settings, one
table and one report. The end-to-end test compares the packaged model with itself under two
specs: greedy decoding and the same judges must give identical numbers (every Δ is 0)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oyster.bench.compare import Column, ModelSpec, comparison_rows, delta
from oyster.bench.metrics import (
    ConstructiveSummary,
    OverRefusalSummary,
    SystemSummary,
    beta_key,
    rate,
)
from oyster.cli import app
from oyster.errors import InputError

runner = CliRunner()


@pytest.mark.parametrize("text", ["trained", "=embedded", "a b=embedded", "x="])
def test_model_specs_need_a_plain_name_and_a_backend(text: str) -> None:
    with pytest.raises(InputError, match="--model"):
        ModelSpec.parse(text)
    assert ModelSpec.parse("trained-1=embedded:/m/x.gguf").backend == "embedded:/m/x.gguf"


def _column(model: str, headline: float, en: float, declined: tuple[int, int]) -> Column:
    c = ConstructiveSummary(scored=10, satisfaction=0.1, safety=0.9, c_beta={"2": headline / 100},
                            headline=headline, by_level={}, by_category={},
                            by_language={"en": {"2": en}}, satisfaction_items={})
    o = OverRefusalSummary(hard_refusal=rate(0, 4), constructive=rate(1, 4),
                           declined=rate(*declined), declined_by_language={"zh": rate(*declined)})
    return Column(model=model, system="bare", summaries={
        "constructive": SystemSummary(n=10, errors=0, undetermined={}, refusal_mix={},
                                      constructive=c),
        "over-refusal": SystemSummary(n=4, errors=0, undetermined={}, refusal_mix={},
                                      over_refusal=o)})


def test_rows_hold_each_metric_per_language_and_the_difference_to_the_baseline() -> None:
    cols = [_column("untrained", 40.0, 0.5, (1, 4)), _column("trained", 46.5, 0.55, (2, 4))]
    rows = {(r.metric, r.language): r for r in comparison_rows(cols, ["en", "zh"])}
    c2 = rows[("C_2 × 100", "all")]
    assert c2.values == {"untrained · bare": 40.0, "trained · bare": 46.5}
    assert delta(c2, "trained · bare", "untrained · bare") == 6.5 and c2.better == "higher"
    assert rows[("C_2 × 100", "en")].values["trained · bare"] == 55.0
    assert ("C_2 × 100", "zh") not in rows  # no Chinese items scored: no row, not a zero
    declined = rows[("over-refusal: declined %", "zh")]
    assert declined.values == {"untrained · bare": 25.0, "trained · bare": 50.0}
    assert declined.better == "lower" and declined.n["trained · bare"] == 4
    assert not any(m.startswith("Strata") for m, _ in rows)


@pytest.mark.slow
def test_compare_runs_every_model_the_same_way_and_reports_side_by_side(
        tmp_path: Path, shared_dir: Path) -> None:
    from oyster.backends.embedded import default_model_path

    out = tmp_path / "cmp"
    args = ["bench", "compare", "--model", "packaged=embedded",
            "--model", f"same-file=embedded:{default_model_path()}",
            "--strata-data", str(shared_dir / "data" / "strata_sword"), "--levels", "1",
            "--limit", "2", "--engine", "--engine-limit", "1", "--out", str(out),
            "--max-tokens", "8", "--timeout", "300", "--backend-opt", "n_threads=1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == sorted(f"{b}-{m}-{s}" for b in ("constructive", "over-refusal", "strata-sword")
                           for m in ("packaged", "same-file") for s in ("bare", "engine"))
    n_items = {p.name: len(p.joinpath("results.jsonl").read_text().splitlines())
               for p in out.iterdir() if p.is_dir()}
    assert n_items["constructive-packaged-bare"] == 2 and n_items["constructive-packaged-engine"] == 1
    assert n_items["strata-sword-same-file-bare"] == 4  # 2 per language at level 1
    assert n_items["strata-sword-same-file-engine"] == 2

    comparison = json.loads((out / "comparison.json").read_text())
    rows = {(r["metric"], r["language"]): r for r in comparison["rows"]}
    assert {("C_2 × 100", "all"), ("over-refusal: declined %", "all"),
            ("Strata-Sword ASR %", "en"), ("Strata-Sword ASR %", "zh")} <= rows.keys()
    for row in rows.values():  # the same weights, greedy: identical numbers on each system
        for system in ("bare", "engine"):
            assert row["values"][f"packaged · {system}"] == row["values"][f"same-file · {system}"]
    page = (out / "report.html").read_text("utf-8")
    assert "packaged · bare" in page and "same-file · engine" in page
    assert "declined, " in page
    # a second call with --resume generates nothing new and gives the same table
    again = runner.invoke(app, [*args, "--resume", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "comparison.json").read_text())["rows"] == comparison["rows"]


def test_a_compare_run_from_before_the_registry_resumes(tmp_path: Path) -> None:
    """`bench compare` wrote the starter sets as `package:constructive_starter` before the
    Benchmark registry (`package:constructive_starter.jsonl` now): the same data, so a run
    started then must resume (before the fix: "cannot resume: data differ"); other data
    still refuses."""
    from oyster.bench.records import RunDir, RunMeta

    def meta(data: str) -> RunMeta:
        return RunMeta(benchmark="constructive", label="old", data=data,
                       backend="embedded:/m/x.gguf", systems=["bare"], judges="local")

    run_dir = RunDir(tmp_path / "run")
    run_dir.start(meta("package:constructive_starter"), resume=False)
    run_dir.start(meta("package:constructive_starter.jsonl"), resume=True)
    assert RunDir(tmp_path / "run").meta().data == "package:constructive_starter.jsonl"
    for other in ("package:over_refusal_starter.jsonl", "/data/constructive_starter.jsonl"):
        with pytest.raises(InputError, match="data differ"):
            run_dir.start(meta(other), resume=True)


def test_per_language_rows_carry_how_many_items_each_column_scored() -> None:
    """A compare with --engine-limit scores fewer items behind the engine than bare: the
    per-language C_2 rows say how many (before: no n on any per-language C_2 row)."""
    from oyster.bench.compare import Column
    from oyster.bench.metrics import BETAS, constructive_summary
    from oyster.bench.records import ResultRecord

    def records(n_en: int, n_zh: int) -> list[ResultRecord]:
        c = {beta_key(b): 0.5 for b in BETAS}
        return [ResultRecord(key=f"bare/{lang}-{i}", system="bare", id=f"{lang}-{i}",
                             language=lang, prompt="p", constructive=c)
                for lang, n in (("en", n_en), ("zh", n_zh)) for i in range(n)]

    def column(model: str, system: str, n_en: int, n_zh: int) -> Column:
        return Column(model=model, system=system, summaries={"constructive": SystemSummary(
            n=n_en + n_zh, errors=0, undetermined={}, refusal_mix={},
            constructive=constructive_summary(records(n_en, n_zh)))})

    rows = {(r.metric, r.language): r for r in comparison_rows(
        [column("m", "bare", 5, 3), column("m", "engine", 2, 1)], ["en", "zh"])}
    assert rows[("C_2 × 100", "all")].n == {"m · bare": 8, "m · engine": 3}
    assert rows[("C_2 × 100", "en")].n == {"m · bare": 5, "m · engine": 2}
    assert rows[("C_2 × 100", "zh")].n == {"m · bare": 3, "m · engine": 1}
