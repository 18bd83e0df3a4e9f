"""`oyster <verb>`: the command line on top of every part.

Each part contributes its verbs through a `register(app)` function in its own `cli.py`;
this module only assembles them and owns the core verb, `decide`.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, TextIO

import typer

from oyster.cli_options import AssessorOption, PolicyOption
from oyster.errors import OysterError

app = typer.Typer(
    name="oyster",
    help="Constructive Safety Alignment: assess risk, anticipate the user, steer and verify replies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def fail(err: OysterError | str, code: int = 2) -> typer.Exit:
    """Print a one-line error (no traceback) and return the exit to raise."""
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(code)


def _case_messages(case: Any) -> Any:
    if not isinstance(case, dict):
        raise ValueError("each line must be a JSON object")
    if "messages" in case:
        return case["messages"]
    if "prompt" in case:
        if not isinstance(case["prompt"], str):
            raise ValueError("'prompt' must be a string")
        return case["prompt"]
    raise ValueError("a case needs 'messages' or 'prompt'")


def _read_cases(stream: TextIO) -> Any:
    for lineno, line in enumerate(stream, 1):
        if line.strip():
            yield lineno, line


@app.command()
def decide(
    file: Annotated[str, typer.Argument(help="JSONL file of cases, or - for standard input")] = "-",
    policy: PolicyOption = None,
    assessor: AssessorOption = "default",
    pretty: Annotated[bool, typer.Option("--pretty", help="indent each record (not JSONL)")] = False,
) -> None:
    """Read cases (JSONL: {"id", "messages"} or {"id", "prompt"}) and write one decision
    record per line, same order and ids. A malformed line gives {"id", "error"} and the run
    goes on."""
    from oyster.engine import Engine

    try:
        engine = Engine(policy=str(policy) if policy else None, assessor=assessor)
        stream = sys.stdin if file == "-" else open(file, encoding="utf-8")  # noqa: SIM115
    except OysterError as e:
        raise fail(e) from None
    except OSError as e:
        raise fail(f"{file}: {e.strerror}") from None
    errors = 0
    with stream:
        for lineno, line in _read_cases(stream):
            case_id: Any = None
            try:
                case = json.loads(line)
                case_id = case.get("id") if isinstance(case, dict) else None
                record: dict[str, Any] = engine.decide(_case_messages(case), id=None).record()
                record["id"] = case_id
            except (json.JSONDecodeError, ValueError, OysterError) as e:
                errors += 1
                reason = f"line {lineno}: " + (f"malformed JSON: {e.msg}"
                                               if isinstance(e, json.JSONDecodeError) else str(e))
                record = {"id": case_id, "error": reason}
            sys.stdout.write(json.dumps(record, ensure_ascii=False, indent=2 if pretty else None)
                             + "\n")
            sys.stdout.flush()
    if errors:
        typer.echo(f"{errors} line(s) could not be decided", err=True)


def _register_parts() -> None:
    # Each part adds its own verbs; the imports are light (heavy ones live in the commands).
    from oyster.assess.cli import register as register_assess
    from oyster.bench.cli import register as register_bench
    from oyster.judges.cli import register as register_judges
    from oyster.lingobp.cli import register as register_lingobp
    from oyster.respond.cli import register as register_respond
    from oyster.serve.cli import register as register_serve
    from oyster.serve.console.cli import register as register_console
    from oyster.taxonomy.cli import register as register_policy
    from oyster.train.cli import register as register_train

    for register in (register_policy, register_assess, register_respond, register_serve,
                     register_judges, register_bench, register_lingobp, register_train,
                     register_console):
        register(app)


_register_parts()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
