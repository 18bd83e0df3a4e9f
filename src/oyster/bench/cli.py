"""`oyster bench strata-sword|constructive|over-refusal` and `oyster report`."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from oyster.cli_options import RayOption, RayWorkersOption
from oyster.errors import OysterError

if TYPE_CHECKING:
    from oyster.bench.datasets import BenchItem
    from oyster.bench.metrics import RunSummary

bench_app = typer.Typer(name="bench", no_args_is_help=True,
                        help="Run a benchmark against a backend, bare and/or behind the engine.")

BackendOpt = Annotated[str, typer.Option(
    "--backend", "-b", help="backend spec: embedded, openai:MODEL@URL, hf:PATH")]
EngineOpt = Annotated[bool, typer.Option(
    "--engine", help="run the backend behind the Oyster engine (with --bare: both, side by side)")]
BareOpt = Annotated[bool, typer.Option(
    "--bare", help="run the bare backend (the default when --engine is not given)")]
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
LabelOpt = Annotated[str | None, typer.Option("--label", help="name of this run in reports")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the summary as JSON")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=1.0,
                                           help="seconds allowed for one generation")]
BackendOptOpt = Annotated[list[str] | None, typer.Option(
    "--backend-opt", help="backend constructor option KEY=VALUE (repeatable), e.g. n_threads=1")]


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


def _systems(bare: bool, engine: bool) -> list[Any]:
    if engine and bare:
        return ["bare", "engine"]
    return ["engine"] if engine else ["bare"]


def _run_bench(benchmark: str, data: str, items: list[Any], backend: str, systems: list[Any],
               out: Path, resume: bool, limit: int | None, concurrency: int, judges: str,
               max_tokens: int, temperature: float, policy: Path | None, assessor: str,
               label: str | None, as_json: bool, timeout: float = 120.0,
               backend_opts: list[str] | None = None, ray: str | None = None,
               ray_workers: int | None = None, show: bool = True) -> RunSummary:
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
    from oyster.bench.runner import BenchWorker, JudgePanel, run, run_on_ray, summarize
    from oyster.bench.targets import make_targets
    from oyster.taxonomy.policy import load_policy

    items = items[:limit] if limit else items
    params = GenerationParams(max_tokens=max_tokens, temperature=temperature, timeout=timeout)
    pol = load_policy(policy)
    targets = make_targets(systems, backend, params, str(policy) if policy else None, assessor,
                           _backend_options(backend_opts))
    meta = RunMeta(benchmark=benchmark, label=label or out.name, data=data, backend=backend,
                   systems=systems, judges=judges,
                   params={**params.model_dump(mode="json"),
                           "backend_options": _backend_options(backend_opts)},
                   targets=[t.describe() for t in targets],
                   started=datetime.now(UTC).isoformat(timespec="seconds"))
    run_dir = RunDir(out)
    run_dir.start(meta, resume)
    done = run_dir.done_keys()
    panel = JudgePanel(judges, pol)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=False) as progress:
        tasks: dict[str, TaskID] = {t.system: progress.add_task(
            f"{benchmark} · {t.system}", total=len(items),
            completed=sum(1 for i in items if record_key(t.system, i.id) in done))
            for t in targets}
        def advance(system: str) -> None:
            progress.advance(tasks[system])

        if ray is None:
            asyncio.run(run(benchmark, items, targets, panel, run_dir, concurrency,
                            on_done=advance))
        else:  # the same pairs and records, from Ray workers that build their own targets
            worker = BenchWorker(benchmark, tuple(systems), backend, params,
                                 str(policy) if policy else None, assessor,
                                 _backend_options(backend_opts), judges, concurrency)
            run_on_ray(worker, items, run_dir, ray, ray_workers, on_done=advance)
    summary = summarize(run_dir)
    if not show:
        return summary
    if as_json:
        typer.echo(json.dumps(summary.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        print_summary(summary)
        typer.echo(f"results: {run_dir.results_path}")
    return summary


def _strata_items(data: Path, levels: str | None, languages: str | None, limit: int | None
                  ) -> list[BenchItem]:
    """Strata-Sword items; with `limit`, the first N of every (language, level) file, so a
    small run still covers every cell. Raises ValueError for a bad --levels."""
    from oyster.bench.datasets import load_strata_sword

    lv = {int(x) for x in levels.split(",")} if levels else None
    langs = {x.strip().replace("cn", "zh") for x in languages.split(",")} if languages else None
    items = load_strata_sword(data, lv, langs)
    if not limit:
        return items
    per: dict[str, int] = {}
    kept = []
    for it in items:
        cell = f"{it.language}/{it.level}"
        per[cell] = per.get(cell, 0) + 1
        if per[cell] <= limit:
            kept.append(it)
    return kept


@bench_app.command("strata-sword")
def strata_sword(
    data: Annotated[Path, typer.Option("--data", help="directory of strata_sword_<lang>_level_<N>"
                                                      ".xlsx files", file_okay=False)],
    out: OutOpt,
    backend: BackendOpt = "embedded",
    engine: EngineOpt = False,
    bare: BareOpt = False,
    levels: Annotated[str | None, typer.Option("--levels", help="e.g. 1,2 (default: all files)")
                      ] = None,
    languages: Annotated[str | None, typer.Option("--languages", help="e.g. en,zh")] = None,
    resume: ResumeOpt = False, limit: LimitOpt = None, concurrency: ConcOpt = 1,
    judges: JudgesOpt = "local", max_tokens: MaxTokOpt = 128, temperature: TempOpt = 0.0,
    policy: PolicyOpt = None, assessor: AssessorOpt = "default", label: LabelOpt = None,
    as_json: JsonOpt = False, timeout: TimeoutOpt = 120.0, backend_opt: BackendOptOpt = None,
    ray: RayOption = None, ray_workers: RayWorkersOption = None,
) -> None:
    """Strata-Sword jailbreak prompts: attack success rate per language × level and per attack
    method. With --limit N, the first N prompts of each (language, level) file."""
    try:
        items = _strata_items(data, levels, languages, limit)
        _run_bench("strata-sword", str(data), items, backend, _systems(bare, engine), out, resume,
                   None, concurrency, judges, max_tokens, temperature, policy, assessor, label,
                   as_json, timeout, backend_opt, ray, ray_workers)
    except ValueError as e:
        raise _fail(f"--levels: {e}") from None
    except OysterError as e:
        raise _fail(e) from None


@bench_app.command("constructive")
def constructive(
    out: OutOpt,
    data: Annotated[Path | None, typer.Option("--data", dir_okay=False,
                                              help="constructive JSONL (default: our starter set)")
                    ] = None,
    backend: BackendOpt = "embedded", engine: EngineOpt = False, bare: BareOpt = False,
    resume: ResumeOpt = False, limit: LimitOpt = None, concurrency: ConcOpt = 1,
    judges: JudgesOpt = "local", max_tokens: MaxTokOpt = 128, temperature: TempOpt = 0.0,
    policy: PolicyOpt = None, assessor: AssessorOpt = "default", label: LabelOpt = None,
    as_json: JsonOpt = False, timeout: TimeoutOpt = 120.0, backend_opt: BackendOptOpt = None,
    ray: RayOption = None, ray_workers: RayWorkersOption = None,
) -> None:
    """Constructive benchmark: satisfaction, safety and C_β for β in 0.1 … 10, per level and
    per category (headline: β = 2, ×100)."""
    from oyster.bench.datasets import CONSTRUCTIVE_STARTER, load_constructive

    try:
        items = load_constructive(data)
        _run_bench("constructive", str(data or f"package:{CONSTRUCTIVE_STARTER}"), items, backend,
                   _systems(bare, engine), out, resume, limit, concurrency, judges, max_tokens,
                   temperature, policy, assessor, label, as_json, timeout, backend_opt, ray,
                   ray_workers)
    except OysterError as e:
        raise _fail(e) from None


@bench_app.command("over-refusal")
def over_refusal(
    out: OutOpt,
    data: Annotated[Path | None, typer.Option("--data", dir_okay=False,
                                              help="JSONL of benign prompts that sound risky "
                                                   "(default: our starter set)")] = None,
    backend: BackendOpt = "embedded", engine: EngineOpt = False, bare: BareOpt = False,
    resume: ResumeOpt = False, limit: LimitOpt = None, concurrency: ConcOpt = 1,
    judges: JudgesOpt = "local", max_tokens: MaxTokOpt = 128, temperature: TempOpt = 0.0,
    policy: PolicyOpt = None, assessor: AssessorOpt = "default", label: LabelOpt = None,
    as_json: JsonOpt = False, timeout: TimeoutOpt = 120.0, backend_opt: BackendOptOpt = None,
    ray: RayOption = None, ray_workers: RayWorkersOption = None,
) -> None:
    """Over-refusal on benign prompts that sound risky: share of hard_refusal / constructive
    replies, and of refuse / guide decisions behind the engine."""
    from oyster.bench.datasets import OVER_REFUSAL_STARTER, load_prompts

    try:
        items = load_prompts(data)
        _run_bench("over-refusal", str(data or f"package:{OVER_REFUSAL_STARTER}"), items, backend,
                   _systems(bare, engine), out, resume, limit, concurrency, judges, max_tokens,
                   temperature, policy, assessor, label, as_json, timeout, backend_opt, ray,
                   ray_workers)
    except OysterError as e:
        raise _fail(e) from None


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
    from oyster.bench.datasets import load_constructive, load_prompts
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
            for bench in chosen:
                if bench == "strata-sword" and strata_data is not None:
                    items, data = _strata_items(strata_data, levels, None, n), str(strata_data)
                elif bench == "constructive":
                    items, data = load_constructive(None), "package:constructive_starter"
                    items = items[:n] if n else items
                else:
                    items, data = load_prompts(None), "package:over_refusal_starter"
                    items = items[:n] if n else items
                languages |= {it.language for it in items}
                for spec in specs:
                    run_dir = out / f"{bench}-{spec.name}-{system}"
                    typer.echo(f"{bench} · {spec.name} · {system}: {len(items)} prompts "
                               f"-> {run_dir}")
                    summary = _run_bench(bench, data, items, spec.backend, [system], run_dir,
                                         resume, None, concurrency, judges, max_tokens,
                                         temperature, policy, assessor, spec.name, as_json,
                                         timeout, backend_opt, show=False)
                    col = columns.setdefault((spec.name, system), Column(
                        model=spec.name, system=system, summaries={}))
                    col.summaries[bench] = summary.systems[system]
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
    app.add_typer(bench_app, name="bench")
    app.command("report")(report)


if __name__ == "__main__":  # `python -m oyster.bench.cli ...`: the bench verbs on their own
    standalone = typer.Typer(no_args_is_help=True, add_completion=False,
                             pretty_exceptions_enable=False)
    register(standalone)
    standalone()
