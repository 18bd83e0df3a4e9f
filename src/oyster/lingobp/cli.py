"""`oyster lingobp run|export|summary`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from oyster.cli_options import RayOption, RayWorkersOption
from oyster.errors import BackendError, OysterError

# Exit codes: 2 for bad input or configuration, 3 when the backend fails, 1 when some
# queries failed (their recorded rounds are kept; --resume retries them).
EXIT_INPUT = 2
EXIT_BACKEND = 3
EXIT_SOME_FAILED = 1

lingobp_app = typer.Typer(
    name="lingobp", no_args_is_help=True,
    help="Lingo-BP: improve each query's reasoning chain from the judges' feedback, one minimal "
         "edit per round, and export the results as SFT and preference data.")

RunDirArg = Annotated[Path, typer.Argument(help="a Lingo-BP run directory", file_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]
MinSafetyOpt = Annotated[float, typer.Option("--min-safety", min=0.0, max=1.0, help=(
    "leave out chosen replies whose safety score is lower: 1 = only 'safe', 0.5 also "
    "'mostly_safe'"))]
RefusalShareOpt = Annotated[float | None, typer.Option("--max-refusal-share", min=0.0, max=1.0,
    help=("SFT rows: keep refusals to at most this share of the rows (evenly spread); "
          "default: all"))]
MaxPairsOpt = Annotated[int, typer.Option("--max-pairs", min=1, max=20, help=(
    "most preference pairs per query (its most telling rejected replies)"))]
# the export's default, repeated here so the CLI module loads without the export's imports
DEFAULT_MAX_PAIRS = 3


def _exit(err: OysterError | str) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(EXIT_BACKEND if isinstance(err, BackendError) else EXIT_INPUT)


def _print_numbers(run_dir: Path, as_json: bool, extra: dict[str, object] | None = None) -> None:
    from oyster.lingobp.records import RunStore
    from oyster.lingobp.report import round_table, run_numbers

    numbers = run_numbers(RunStore(run_dir).results())
    if as_json:
        typer.echo(json.dumps({**(extra or {}), "numbers": numbers.model_dump(mode="json")},
                              indent=2, ensure_ascii=False))
        return
    typer.echo(round_table(numbers))
    typer.echo(f"queries {numbers.queries} · stopped: "
               + (", ".join(f"{k} {v}" for k, v in sorted(numbers.stopped.items())) or "-")
               + f" · preference pairs {numbers.preference_pairs} · strategy changes "
               f"{numbers.strategy_changes} · clamped edits {numbers.clamped_edits}"
               + (f" · engine level = label for {numbers.level_agreement:.0%}"
                  if numbers.level_agreement is not None else ""))


@lingobp_app.command("run")
def run_command(
    data: Annotated[Path, typer.Option("--data", dir_okay=False, help=(
        "JSONL of queries: {id, prompt} or {id, messages} (as for `oyster decide`), or the "
        "constructive-benchmark format {id, query|messages, level, category, user_role}"))],
    out: Annotated[Path, typer.Option("--out", "-o", file_okay=False,
                                      help="run directory (created; with --resume, continued)")],
    backend: Annotated[str, typer.Option("--backend", "-b", help=(
        "chat backend that writes the replies: embedded, openai:MODEL@URL, hf:PATH"))
    ] = "embedded",
    judge: Annotated[str, typer.Option("--judge", help=(
        "judges: local (offline), llm (the --backend model), or llm:BACKEND_SPEC"))] = "local",
    editor: Annotated[str, typer.Option("--editor", help=(
        "edit and propagation step: rule (offline, from the judges' verdicts), llm (the "
        "--backend model), llm:BACKEND_SPEC, or auto (llm when the judges are llm)"))] = "auto",
    rounds: Annotated[int, typer.Option("--rounds", min=0, max=20,
                                        help="edit rounds after the initial reply")] = 3,
    mode: Annotated[str, typer.Option("--mode", help=(
        "whose feedback drives the edits and ranks the rounds: both (C_β), user "
        "(satisfaction) or safety"))] = "both",
    resume: Annotated[bool, typer.Option("--resume", help=(
        "continue the run in --out: skip finished queries, continue unfinished ones from "
        "their last round"))] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1,
                                              help="only the first N queries")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=64,
                                             help="queries in flight at once")] = 1,
    policy: Annotated[Path | None, typer.Option("--policy", dir_okay=False,
                                                help="policy YAML (default: the packaged one)")
                      ] = None,
    assessor: Annotated[str, typer.Option("--assessor", help="assessor spec for the engine")
                        ] = "default",
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, max=32768,
                                            help="most tokens per reply")] = 160,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1,
                                           help="seconds the backend may take per reply")] = 60.0,
    as_json: JsonOpt = False,
    ray: RayOption = None,
    ray_workers: RayWorkersOption = None,
) -> None:
    """Run Lingo-BP over a query file. Every round goes to RUN_DIR/rounds.jsonl as it is
    judged and every finished query to RUN_DIR/results.jsonl, so a killed run loses nothing
    and `--resume` picks it up. Prints the mean judge scores per round."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from oyster.backends.base import GenerationParams
    from oyster.lingobp.editors import MODES
    from oyster.lingobp.queries import load_queries
    from oyster.lingobp.records import RunStore
    from oyster.lingobp.run import (
        LingoWorker,
        RunSpec,
        arun_queries,
        build,
        manifest,
        run_queries_on_ray,
    )

    if mode not in MODES:
        raise _exit(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    try:
        queries = load_queries(data)[:limit] if limit else load_queries(data)
        spec = RunSpec(backend=backend, judge=judge, editor=editor, assessor=assessor,
                       policy=str(policy) if policy else None, rounds=rounds,
                       mode=mode)
        params = GenerationParams(max_tokens=max_tokens, timeout=timeout)
        lingo = build(spec, params)
        store = RunStore(out)
        store.start(manifest(spec, lingo, data, limit), resume)
        finished = {r.id for r in store.results()}
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=Console(stderr=True), transient=False) as progress:
            task = progress.add_task("lingo-bp", total=len(queries),
                                     completed=sum(1 for q in queries if q.id in finished))
            def advance(qid: str) -> None:
                progress.update(task, advance=1, description=f"lingo-bp · {qid}")

            if ray is None:
                report = asyncio.run(arun_queries(lingo, queries, store, concurrency,
                                                  on_done=advance))
            else:  # each Ray worker builds the same parts from the spec
                report = run_queries_on_ray(LingoWorker(spec, params), queries, store, ray,
                                            ray_workers, on_done=advance)
    except OysterError as e:
        raise _exit(e) from None
    _print_numbers(out, as_json, {"report": report.model_dump(mode="json"), "run_dir": str(out)})
    if not as_json:
        typer.echo(f"rounds: {store.rounds_path}\nresults: {store.results_path}")
    for qid, err in report.errors.items():
        typer.echo(f"error: query {qid}: {err}", err=True)
    if report.errors:
        raise typer.Exit(EXIT_SOME_FAILED)


@lingobp_app.command("export")
def export_command(
    run_dir: RunDirArg,
    format: Annotated[str, typer.Option("--format", "-f", help=(
        "sft: {messages} with the best round; preference: {prompt, chosen, rejected} with the "
        "best and worst rounds, where their scores differ"))],
    out: Annotated[Path, typer.Option("--out", "-o", dir_okay=False, help="JSONL file to write")],
    reasoning_tag: Annotated[str, typer.Option("--reasoning-tag", help=(
        "wrap the chain as the assistant's reasoning in <TAG>...</TAG> before the reply; "
        "'none' drops it"))] = "think",
    min_safety: MinSafetyOpt = 1.0,
    max_pairs: MaxPairsOpt = DEFAULT_MAX_PAIRS,
    max_refusal_share: RefusalShareOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write chat-format JSONL that TRL (and `oyster train sft|orpo`) reads directly. The
    chosen reply is the best round that passed verification (the model's text or the
    policy's); the rejected ones are the model's attempts that failed verification, rounds
    (and bare replies, see `lingobp bare`) the judges found unsafe or refusing a benign
    ask, and the worst round. Each row's `meta` says where its replies came from."""
    from oyster.lingobp.export import export

    try:
        summary = export(run_dir, format, out, reasoning_tag,  # type: ignore[arg-type]
                         min_safety, max_pairs, max_refusal_share)
    except OysterError as e:
        raise _exit(e) from None
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(summary.skipped.items())) or "none"
    typer.echo(f"{summary.rows} {summary.format} rows from {summary.queries} queries → "
               f"{summary.out} (left out: {skipped})")


@lingobp_app.command("bare")
def bare_command(
    run_dir: RunDirArg,
    backend: Annotated[str | None, typer.Option("--backend", "-b", help=(
        "backend to ask (default: the run's own, the model being trained)"))] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1, max=32768, help=(
        "most tokens per reply (default: the run's)"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask the bare model (no engine, no system prompt) for a reply to each finished query
    of RUN_DIR, verify and judge it with the run's judges, and keep it in RUN_DIR/bare.jsonl:
    the export offers it as a rejected reply where it failed verification, was judged unsafe
    or refused a benign ask, or scored lower than the chosen reply. Queries already there are
    skipped, so running it again continues a killed pass (and covers queries the run
    finished since)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from oyster.backends import from_spec
    from oyster.lingobp.bare import read_bare, run_bare
    from oyster.lingobp.records import RunStore
    from oyster.lingobp.run import RunSpec, build

    try:
        store = RunStore(run_dir)
        m = store.manifest()
        results = store.results()
        spec = RunSpec(backend=m.backend, judge=m.judge, editor="rule", assessor=m.assessor,
                       policy=m.policy if Path(m.policy).is_file() else None, mode=m.mode)
        params = m.generation.model_copy(update={"max_tokens": max_tokens or
                                                 m.generation.max_tokens})
        lingo = build(spec, params)
        if lingo.policy.fingerprint() != m.policy_fingerprint:
            raise _exit(f"{run_dir}: the run's policy ({m.policy}) is not the one loaded here")
        chat = from_spec(backend) if backend else lingo.responder.backend
        already = set(read_bare(run_dir))
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=Console(stderr=True), transient=False) as progress:
            task = progress.add_task("bare", total=len(results),
                                     completed=sum(1 for r in results if r.id in already))
            errors = run_bare(lingo, chat, params, results, run_dir,
                              on_done=lambda qid: progress.update(
                                  task, advance=1, description=f"bare · {qid}"))
    except OysterError as e:
        raise _exit(e) from None
    done = read_bare(run_dir)
    summary = {"run_dir": str(run_dir), "queries": len(results), "bare_replies": len(done),
               "failed_verification": sum(not r.verification.passed for r in done.values()),
               "errors": errors}
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        typer.echo(f"bare replies for {len(done)} of {len(results)} finished queries "
                   f"({summary['failed_verification']} failed verification) → "
                   f"{run_dir / 'bare.jsonl'}")
    for qid, err in errors.items():
        typer.echo(f"error: query {qid}: {err}", err=True)
    if errors:
        raise typer.Exit(EXIT_SOME_FAILED)


@lingobp_app.command("card")
def card_command(run_dir: RunDirArg, min_safety: MinSafetyOpt = 1.0,
                 max_pairs: MaxPairsOpt = DEFAULT_MAX_PAIRS,
                 max_refusal_share: RefusalShareOpt = None, as_json: JsonOpt = False) -> None:
    """The data card of a run: queries, SFT rows and preference pairs per language, level,
    kind and strategy; chosen replies written by the model vs the policy; where the rejected
    replies came from and why. Same --min-safety/--max-pairs/--max-refusal-share as the
    exports it describes."""
    from oyster.lingobp.card import card_markdown, data_card

    try:
        card = data_card(run_dir, min_safety, max_pairs, max_refusal_share)
    except OysterError as e:
        raise _exit(e) from None
    typer.echo(card.model_dump_json(indent=2) if as_json else card_markdown(card))


@lingobp_app.command("summary")
def summary_command(run_dir: RunDirArg, as_json: JsonOpt = False) -> None:
    """Mean judge scores per round of a run (finished queries; early stoppers carried
    forward), and how the queries ended."""
    from oyster.lingobp.records import RunStore

    try:
        RunStore(run_dir).manifest()
    except OysterError as e:
        raise _exit(e) from None
    _print_numbers(run_dir, as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(lingobp_app, name="lingobp")
