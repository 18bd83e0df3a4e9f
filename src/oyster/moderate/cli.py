"""`oyster moderate train | eval | check`: the reply moderator's head, its numbers, and a
quick look at one text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from oyster.errors import OysterError


def _fail(err: OysterError | str) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(2)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Moderate replies as text in their own right (any request).",
                      no_args_is_help=True)
    app.add_typer(sub, name="moderate")

    @sub.command("train")
    def train_cmd(out: Annotated[Path | None, typer.Option(
            help="head file to write (default: the packaged artefact)")] = None) -> None:
        """Embed the labelled replies, fit the head, choose thresholds on validation."""
        from oyster.moderate.train import train

        try:
            train(out, log=lambda m: typer.echo(m, err=True))
        except OysterError as e:
            raise _fail(e) from None

    @sub.command("eval")
    def eval_cmd(head: Annotated[Path | None, typer.Option(help="head file")] = None,
                 out: Annotated[Path | None, typer.Option(help="write the numbers as JSON")
                                ] = None) -> None:
        """Recall and false alarms on the held-out test split, per language; ms per reply."""
        from oyster.moderate.train import evaluate

        try:
            result = evaluate(head, log=lambda m: None)
        except OysterError as e:
            raise _fail(e) from None
        text = json.dumps(result, indent=2, ensure_ascii=False)
        if out:
            out.write_text(text + "\n", "utf-8")
        typer.echo(text)

    @sub.command("check")
    def check_cmd(text: Annotated[str, typer.Argument(help="the reply text")],
                  strictness: Annotated[str, typer.Option(
                      help="lenient, normal or strict")] = "normal") -> None:
        """Moderate one text and print the verdict as JSON."""
        from oyster.moderate import Moderator
        from oyster.taxonomy.policy import default_policy

        if strictness not in ("lenient", "normal", "strict"):
            raise _fail(f"--strictness {strictness!r}: choose lenient, normal or strict")
        try:
            verdict = Moderator(default_policy().moderation).moderate(
                text, strictness)  # type: ignore[arg-type]
        except OysterError as e:
            raise _fail(e) from None
        typer.echo(verdict.model_dump_json())
