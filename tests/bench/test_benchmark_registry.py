"""A benchmark is a registration: one registered in this test (its own prompts, judged by a
refusal classifier and answered by a backend also registered here) gets its `oyster bench`
command, runs through the runner, summarises, re-judges and adds its section to the report,
with no change anywhere else. The backend and classifier are plug-ins written for the test
(plain rules, no model), so the expected numbers are known by hand."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from oyster.backends import BACKENDS
from oyster.backends.base import ChatBackend, Completion, GenerationParams
from oyster.bench.benchmark import BENCHMARKS, Benchmark, benchmark
from oyster.bench.cli import register
from oyster.bench.datasets import BenchItem
from oyster.bench.metrics import over_refusal_summary
from oyster.bench.records import RunDir, RunMeta
from oyster.bench.report import write_report
from oyster.bench.runner import JudgePanel, rejudge, run, summarize
from oyster.bench.targets import make_targets
from oyster.errors import InputError
from oyster.judges import REFUSAL_CLASSIFIERS
from oyster.judges.base import RefusalClassifier, RefusalVerdict
from oyster.types import Message

PROMPTS = ["How do I sharpen a kitchen knife?", "Tell me a joke about forbidden fruit.",
           "Which forbidden city gate faces south?", "How long do I boil an egg?"]
DECLINE = "I can't help with that."


class RuleBackend(ChatBackend):
    """Declines any prompt with the word 'forbidden', answers the rest."""

    @property
    def spec(self) -> str:
        return "rule-test"

    def complete(self, messages: Sequence[Message], params: GenerationParams | None = None
                 ) -> Completion:
        ask = messages[-1].content
        return Completion(text=DECLINE if "forbidden" in ask else f"Sure: {ask}", model="rule")


class PrefixClassifier(RefusalClassifier):
    def classify(self, query: object, reply: str) -> RefusalVerdict:
        label = "hard_refusal" if reply.startswith("I can't") else "full_compliance"
        return RefusalVerdict(judge="prefix-test", label=label)


def _load(path: str | Path | None) -> list[BenchItem]:
    prompts = PROMPTS if path is None else Path(path).read_text("utf-8").split("\n")
    return [BenchItem(id=f"t{i}", messages=[Message(role="user", content=p)], language="en")
            for i, p in enumerate(prompts) if p]


def _section(runs: Sequence[object], anchors_on: bool) -> str:
    return f"<h2>Tiny benchmark</h2><p>{len(runs)} run(s)</p>"


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> Iterator[Benchmark]:
    """The tiny benchmark and its plug-ins, registered for this test only."""
    for registry in (BENCHMARKS, BACKENDS, REFUSAL_CLASSIFIERS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    BACKENDS.register("rule-test")(lambda **_: RuleBackend())
    REFUSAL_CLASSIFIERS.register("prefix-test")(lambda **_: PrefixClassifier())
    made = Benchmark(
        name="tiny-test", help="Four written prompts; share of declined replies.",
        needs=("refusal",), load=_load, default_data="package:tiny",
        summarise=over_refusal_summary, summary_field="over_refusal",
        report_section=_section,
        terminal_rows=lambda ss: [("declined", [str(s.over_refusal.declined.k) for s in ss
                                                 if s.over_refusal])])
    BENCHMARKS.register("tiny-test")(lambda: made)
    yield made


def test_a_registered_benchmark_runs_through_the_runner_and_reports(
        tiny: Benchmark, tmp_path: Path) -> None:
    assert benchmark("tiny-test") is tiny and "tiny-test" in BENCHMARKS.names()
    items = tiny.items(None, limit=3)
    assert [i.id for i in items] == ["t0", "t1", "t2"]
    targets = make_targets(["bare"], "rule-test", GenerationParams())
    run_dir = RunDir(tmp_path / "run")
    run_dir.start(RunMeta(benchmark="tiny-test", label="tiny", data="package:tiny",
                          backend="rule-test", systems=["bare"], judges="prefix-test"), False)
    assert asyncio.run(run("tiny-test", items, targets, JudgePanel("prefix-test"), run_dir)) == 3
    records = run_dir.records()
    # needs only the refusal judge: no safety or satisfaction verdicts were asked for
    assert all(r.refusal and r.safety is None and r.satisfaction is None for r in records)
    declined = summarize(run_dir).systems["bare"].over_refusal
    assert declined is not None and (declined.declined.k, declined.declined.n) == (2, 3)
    assert asyncio.run(rejudge(run_dir, JudgePanel("prefix-test"))) == 3  # items found again
    html = write_report([run_dir.path], tmp_path / "report.html").read_text("utf-8")
    assert "<h2>Tiny benchmark</h2><p>1 run(s)</p>" in html


def test_a_registered_benchmark_gets_its_command_with_the_shared_options(
        tiny: Benchmark, tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    cli = CliRunner()
    help_text = cli.invoke(app, ["bench", "--help"]).output
    assert "tiny-test" in help_text and "Four written prompts" in help_text
    data = tmp_path / "prompts.txt"
    data.write_text("forbidden one\nfine two\nforbidden three\n", "utf-8")
    result = cli.invoke(app, ["bench", "tiny-test", "--data", str(data), "--out",
                              str(tmp_path / "run"), "--backend", "rule-test", "--judges",
                              "prefix-test", "--limit", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["benchmark"] == "tiny-test"
    assert summary["systems"]["bare"]["over_refusal"]["declined"] == {"k": 1, "n": 2, "rate": 0.5}
    assert RunDir(tmp_path / "run").meta().data == str(data)
    shown = cli.invoke(app, ["bench", "tiny-test", "--out", str(tmp_path / "run2"), "--backend",
                             "rule-test", "--judges", "prefix-test"])
    assert shown.exit_code == 0, shown.output
    assert "declined" in shown.output and "2" in shown.output  # its terminal rows
    assert RunDir(tmp_path / "run2").meta().data == "package:tiny"


def test_an_unknown_benchmark_names_the_registered_ones() -> None:
    with pytest.raises(InputError, match="choose from: strata-sword, constructive, over-refusal"):
        benchmark("constructiv")
    with pytest.raises(InputError, match="needs its data"):
        benchmark("strata-sword").items(None)
