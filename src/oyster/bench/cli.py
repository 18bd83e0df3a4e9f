"""`oyster bench NAME` for every registered benchmark (strata-sword, constructive,
over-refusal, ...), `oyster bench compare|rejudge` and `oyster report`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field, make_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from oyster.bench.benchmark import BENCHMARKS, Benchmark, StrataFilters, benchmark
from oyster.cli_options import RayOption, RayWorkersOption, options_command
from oyster.errors import OysterError

if TYPE_CHECKING:
    from oyster.bench.datasets import BenchItem
    from oyster.bench.metrics import RunSummary

bench_app = typer.Typer(name="bench", no_args_is_help=True,
                        help="Run a benchmark against a backend, bare and/or behind the engine.")
# `oyster bench NAME` for every registered benchmark is added by `register` (see there).

BackendOpt = Annotated[str, typer.Option(
    "--backend", "-b", help="backend spec: embedded, openai:MODEL@URL, hf:PATH")]
EngineOpt = Annotated[bool, typer.Option(
    "--engine", help="run the backend behind the Oyster engine (with --bare: both, side by side)")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="run directory (created)",
                                      file_okay=False)]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="continue the run in --out, skipping "
                                                          "what is done")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1,
                                              help="only the first N prompts (per system)")]
ConcOpt = Annotated[int, typer.Option("--concurrency", "-c", min=1, max=64,
                                      help="prompts in flight at once")]
JudgesOpt = Annotated[str, typer.Option("--judges", help="judge spec: local, or llm:BACKEND_SPEC")]
MaxTokOpt = Annotated[int, typer.Option("--max-tokens", min=1, max=32768,
                                        help="generation limit per reply")]
TempOpt = Annotated[float, typer.Option("--temperature", min=0.0, max=2.0)]
PolicyOpt = Annotated[Path | None, typer.Option("--policy", dir_okay=False,
                                                help="policy YAML for the engine")]
AssessorOpt = Annotated[str, typer.Option("--assessor", help="assessor spec for the engine")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the summary as JSON")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=1.0,
                                           help="seconds allowed for one generation")]
BackendOptOpt = Annotated[list[str] | None, typer.Option(
    "--backend-opt", help="backend constructor option KEY=VALUE (repeatable), e.g. n_threads=1")]


@dataclass
class RunOptions:
    """The options of every `oyster bench BENCHMARK` command (declared once, here)."""

    out: OutOpt
    backend: BackendOpt = "embedded"
    engine: EngineOpt = False
    bare: Annotated[bool, typer.Option(
        "--bare", help="run the bare backend (the default when --engine is not given)")] = False
    resume: ResumeOpt = False
    limit: LimitOpt = None
    concurrency: ConcOpt = 1
    judges: JudgesOpt = "local"
    max_tokens: MaxTokOpt = 128
    temperature: TempOpt = 0.0
    policy: PolicyOpt = None
    assessor: AssessorOpt = "default"
    label: Annotated[str | None, typer.Option("--label", help="name of this run in reports")
                     ] = None
    as_json: JsonOpt = False
    timeout: TimeoutOpt = 120.0
    backend_opt: BackendOptOpt = None
    ray: RayOption = None
    ray_workers: RayWorkersOption = None

    def systems(self) -> list[Any]:
        if self.engine and self.bare:
            return ["bare", "engine"]
        return ["engine"] if self.engine else ["bare"]


def _backend_options(pairs: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--backend-opt")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _fail(err: Exception | str) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(2)


def _run_bench(benchmark: str, data: str, items: list[BenchItem], run: RunOptions,
               systems: list[Any], show: bool = True) -> RunSummary:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
    )

    from oyster.backends.base import GenerationParams
    from oyster.bench.records import RunDir, RunMeta, record_key
    from oyster.bench.report import print_summary
    from oyster.bench.runner import BenchWorker, JudgePanel, run_on_ray, summarize
    from oyster.bench.runner import run as run_pairs
    from oyster.bench.targets import make_targets
    from oyster.policy import load_policy

    params = GenerationParams(max_tokens=run.max_tokens, temperature=run.temperature,
                              timeout=run.timeout)
    policy = str(run.policy) if run.policy else None
    backend_options = _backend_options(run.backend_opt)
    targets = make_targets(systems, run.backend, params, policy, run.assessor, backend_options)
    meta = RunMeta(benchmark=benchmark, label=run.label or run.out.name, data=data,
                   backend=run.backend, systems=systems, judges=run.judges,
                   params={**params.model_dump(mode="json"), "backend_options": backend_options},
                   targets=[t.describe() for t in targets],
                   started=datetime.now(UTC).isoformat(timespec="seconds"))
    run_dir = RunDir(run.out)
    run_dir.start(meta, run.resume)
    done = run_dir.done_keys()
    panel = JudgePanel(run.judges, load_policy(run.policy))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=False) as progress:
        tasks: dict[str, TaskID] = {t.system: progress.add_task(
            f"{benchmark} · {t.system}", total=len(items),
            completed=sum(1 for i in items if record_key(t.system, i.id) in done))
            for t in targets}
        def advance(system: str) -> None:
            progress.advance(tasks[system])

        if run.ray is None:
            asyncio.run(run_pairs(benchmark, items, targets, panel, run_dir, run.concurrency,
                                  on_done=advance))
        else:  # the same pairs and records, from Ray workers that build their own targets
            worker = BenchWorker(benchmark, tuple(systems), run.backend, params, policy,
                                 run.assessor, backend_options, run.judges, run.concurrency)
            run_on_ray(worker, items, run_dir, run.ray, run.ray_workers, on_done=advance)
    summary = summarize(run_dir)
    if not show:
        return summary
    if run.as_json:
        typer.echo(json.dumps(summary.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        print_summary(summary)
        typer.echo(f"results: {run_dir.results_path}")
    return summary


def _data_option(b: Benchmark) -> type:
    """The `--data` option of one benchmark, as a one-field options block."""
    kind = typer.Option("--data", help=b.data_help, file_okay=not b.data_is_dir,
                        dir_okay=b.data_is_dir)
    if b.default_data is None:
        return make_dataclass("DataOption", [("data", Annotated[Path, kind])])
    return make_dataclass("DataOption", [("data", Annotated[Path | None, kind], field(
        default=None))])


def _bench_command(b: Benchmark) -> Callable[..., None]:
    """`oyster bench NAME`: the benchmark's data and own options, then the shared block."""

    def command(source: Any, filters: Any, run: RunOptions) -> None:
        try:
            items = b.items(source.data, run.limit, filters)
            _run_bench(b.name, b.data_name(source.data), items, run, run.systems())
        except OysterError as e:
            raise _fail(e) from None

    command.__annotations__ = {"source": _data_option(b), "filters": b.filters,
                               "run": RunOptions, "return": None}
    command.__doc__ = b.help
    command.__name__ = command.__qualname__ = b.name.replace("-", "_")
    return options_command(command)


COMPARE_BENCHMARKS = ("constructive", "over-refusal", "strata-sword")


@bench_app.command("compare")
def compare(
    models: Annotated[list[str], typer.Option(
        "--model", "-m", help="NAME=BACKEND_SPEC, repeatable; the first is the baseline "
        "(e.g. untrained=embedded:runs/untrained.gguf)")],
    out: OutOpt,
    benchmarks: Annotated[str, typer.Option(
        "--benchmarks", help="comma-separated: constructive, over-refusal, strata-sword")
    ] = ",".join(COMPARE_BENCHMARKS),
    strata_data: Annotated[Path | None, typer.Option(
        "--strata-data", file_okay=False, help="Strata-Sword xlsx directory "
        "(needed for strata-sword)")] = None,
    levels: Annotated[str, typer.Option("--levels", help="Strata-Sword levels")] = "1,2",
    bare: Annotated[bool, typer.Option("--bare/--no-bare", help="run the models bare")] = True,
    engine: EngineOpt = False,
    limit: LimitOpt = None,
    engine_limit: Annotated[int | None, typer.Option(
        "--engine-limit", min=1, help="--limit for the engine runs only (the engine is "
        "slower: assessor, verification, regeneration)")] = None,
    resume: ResumeOpt = False, concurrency: ConcOpt = 1, judges: JudgesOpt = "local",
    max_tokens: MaxTokOpt = 128, temperature: TempOpt = 0.0, policy: PolicyOpt = None,
    assessor: AssessorOpt = "default", as_json: JsonOpt = False, timeout: TimeoutOpt = 120.0,
    backend_opt: BackendOptOpt = None,
) -> None:
    """Several models on the same benchmarks, judges and settings: bare (and with --engine
    behind the engine), one run dir per benchmark × model × system in --out, then one
    side-by-side table (per language, with differences to the first model), comparison.json
    and report.html. --resume continues every run."""
    from oyster.bench.compare import Column, ModelSpec, comparison_rows, print_comparison
    from oyster.bench.report import write_report

    try:
        specs = [ModelSpec.parse(m) for m in models]
        if len({s.name for s in specs}) != len(specs):
            raise typer.BadParameter("model names must differ", param_hint="--model")
        chosen = [b.strip() for b in benchmarks.split(",") if b.strip()]
        unknown = sorted(set(chosen) - set(COMPARE_BENCHMARKS))
        if unknown or not chosen:
            raise typer.BadParameter(f"{', '.join(unknown) or 'none given'}; use "
                                     f"{', '.join(COMPARE_BENCHMARKS)}", param_hint="--benchmarks")
        if "strata-sword" in chosen and strata_data is None:
            raise typer.BadParameter("strata-sword needs --strata-data DIR (or leave it out "
                                     "of --benchmarks)", param_hint="--strata-data")
        systems = (["bare"] if bare else []) + (["engine"] if engine else [])
        if not systems:
            raise typer.BadParameter("nothing to run: --no-bare without --engine")
        columns: dict[tuple[str, str], Column] = {}
        run_dirs: list[Path] = []
        languages: set[str] = set()
        for system in systems:
            n = engine_limit if system == "engine" and engine_limit else limit
            for name in chosen:
                bench = benchmark(name)
                data = strata_data if name == "strata-sword" else None
                filters = StrataFilters(levels=levels) if name == "strata-sword" else None
                items = bench.items(data, n, filters)
                languages |= {it.language for it in items}
                for spec in specs:
                    run_dir = out / f"{name}-{spec.name}-{system}"
                    typer.echo(f"{name} · {spec.name} · {system}: {len(items)} prompts "
                               f"-> {run_dir}")
                    run = RunOptions(out=run_dir, backend=spec.backend, resume=resume,
                                     concurrency=concurrency, judges=judges,
                                     max_tokens=max_tokens, temperature=temperature,
                                     policy=policy, assessor=assessor, label=spec.name,
                                     as_json=as_json, timeout=timeout, backend_opt=backend_opt)
                    summary = _run_bench(name, bench.data_name(data), items, run, [system],
                                         show=False)
                    col = columns.setdefault((spec.name, system), Column(
                        model=spec.name, system=system, summaries={}))
                    col.summaries[name] = summary.systems[system]
                    run_dirs.append(run_dir)
    except ValueError as e:
        raise _fail(e) from None
    except OysterError as e:
        raise _fail(e) from None
    ordered = [columns[(s.name, system)] for system in systems for s in specs]
    rows = comparison_rows(ordered, sorted(languages))
    (out / "comparison.json").write_text(json.dumps({
        "models": [s.model_dump() for s in specs], "systems": systems, "benchmarks": chosen,
        "judges": judges, "max_tokens": max_tokens, "temperature": temperature,
        "backend_options": _backend_options(backend_opt), "limit": limit,
        "engine_limit": engine_limit, "run_dirs": [str(p) for p in run_dirs],
        "rows": [r.model_dump() for r in rows]}, indent=2, ensure_ascii=False) + "\n", "utf-8")
    report = write_report(run_dirs, out / "report.html",
                          title=f"{' vs '.join(s.name for s in specs)}: same judges and settings")
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in rows], indent=2, ensure_ascii=False))
    else:
        print_comparison(ordered, rows)
    typer.echo(f"comparison: {out / 'comparison.json'}\nreport: {report}")


@bench_app.command("rejudge")
def rejudge_run(
    run_dir: Annotated[Path, typer.Argument(help="a run directory", file_okay=False)],
    judges: JudgesOpt = "local",
    as_json: JsonOpt = False,
) -> None:
    """Judge a run's stored replies again (other or retrained judges), without generating;
    the numbers are recomputed."""
    from oyster.bench.records import RunDir
    from oyster.bench.report import print_summary
    from oyster.bench.runner import JudgePanel, rejudge, summarize

    try:
        rd = RunDir(run_dir)
        asyncio.run(rejudge(rd, JudgePanel(judges)))
        summary = summarize(rd)
    except OysterError as e:
        raise _fail(e) from None
    if as_json:
        typer.echo(json.dumps(summary.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        print_summary(summary)


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="one or more run directories")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write", dir_okay=False)],
    anchors: Annotated[bool, typer.Option("--anchors/--no-anchors",
                                          help="overlay the paper's published figures")] = True,
    title: Annotated[str, typer.Option("--title")] = "Oyster benchmark report",
) -> None:
    """Write one self-contained HTML report (tables and plots) comparing runs side by side."""
    from oyster.bench.report import write_report

    try:
        path = write_report(run_dirs, out, anchors=anchors, title=title)
    except OysterError as e:
        raise _fail(e) from None
    typer.echo(f"report: {path}")


def register(app: typer.Typer) -> None:
    """Add `oyster bench` (one command per registered benchmark, then compare and rejudge)
    and `oyster report` to `app`."""
    bench = typer.Typer(name="bench", no_args_is_help=True, help=bench_app.info.help)
    for name in BENCHMARKS.names():
        bench.command(name)(_bench_command(benchmark(name)))
    bench.registered_commands += bench_app.registered_commands
    app.add_typer(bench, name="bench")
    app.command("report")(report)


if __name__ == "__main__":  # `python -m oyster.bench.cli ...`: the bench verbs on their own
    standalone = typer.Typer(no_args_is_help=True, add_completion=False,
                             pretty_exceptions_enable=False)
    register(standalone)
    standalone()
