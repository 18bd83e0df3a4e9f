"""`oyster <verb>`: the command line on top of every part.

Each part contributes its verbs through a `register(app)` function in its own `cli.py`;
this module only assembles them and owns the core verb, `decide`.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

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


MAX_ID_CHARS = 1_000


def _json_line(record: dict[str, Any], pretty: bool = False) -> str:
    """Strict JSON (no NaN or Infinity, valid UTF-8), or an error."""
    text = json.dumps(record, ensure_ascii=False, allow_nan=False, indent=2 if pretty else None)
    text.encode("utf-8")  # lone surrogates cannot be written
    return text


def _case_id(case: Any) -> tuple[Any, str | None]:
    """The case's id if it can be written back as strict JSON, else (None, the reason)."""
    case_id = case.get("id") if isinstance(case, dict) else None
    try:
        shown = _json_line({"id": case_id})
    except UnicodeEncodeError:
        return None, "the id holds a lone surrogate (not valid Unicode); replaced by null"
    except ValueError:
        return None, "the id is NaN or infinite (not strict JSON); replaced by null"
    if len(shown) > MAX_ID_CHARS + 8:
        return None, f"the id is longer than {MAX_ID_CHARS} characters; replaced by null"
    return case_id, None


def decide_line(engine: Any, raw: bytes, lineno: int) -> dict[str, Any]:
    """One input line of `oyster decide` → one record: the decision, or {"id", "error"}.
    Never raises: whatever the line holds, the run goes on."""
    case_id: Any = None
    try:
        limit = engine.policy.limits.max_request_bytes
        if len(raw) > limit:
            raise ValueError(f"the line has {len(raw):,} bytes (at most {limit:,}, policy "
                             "limits.max_request_bytes)")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"not valid UTF-8 (byte {raw[e.start]:#04x} at offset "
                             f"{e.start})") from None
        if not text.strip():
            raise ValueError("empty line")
        try:
            case = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"malformed JSON: {e.msg} (column {e.colno})") from None
        except RecursionError:
            raise ValueError("malformed JSON: nested too deeply") from None
        except ValueError:  # Python refuses to read integers of over 4,300 digits
            raise ValueError("malformed JSON: a number is too long") from None
        case_id, id_problem = _case_id(case)
        if id_problem is not None:
            raise ValueError(id_problem)
        record: dict[str, Any] = engine.decide(_case_messages(case), id=None).record()
        record["id"] = case_id
        _json_line(record)
        return record
    except (ValueError, OysterError, RecursionError, UnicodeError) as e:
        reason = str(e)[:500]
    except Exception as e:  # a bug must cost one line, not the run; say it is one
        reason = f"internal error ({type(e).__name__}: {str(e)[:300]}); please report it"
    # the message may quote the input: keep it writable
    reason = reason.encode("utf-8", "replace").decode("utf-8")
    return {"id": case_id, "error": f"line {lineno}: {reason}"}


@app.command()
def decide(
    file: Annotated[str, typer.Argument(help="JSONL file of cases, or - for standard input")] = "-",
    policy: PolicyOption = None,
    assessor: AssessorOption = "default",
    pretty: Annotated[bool, typer.Option("--pretty", help="indent each record (not JSONL)")] = False,
) -> None:
    """Read cases (JSONL: {"id", "messages"} or {"id", "prompt"}) and write one decision
    record per line, same order and ids. A line that cannot be decided (malformed JSON,
    invalid UTF-8, bad messages, over the policy's limits) gives {"id", "error"} and the run
    goes on: lines in = lines out, each strict JSON."""
    from oyster.engine import Engine

    try:
        engine = Engine(policy=str(policy) if policy else None, assessor=assessor)
        stream = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
    except OysterError as e:
        raise fail(e) from None
    except OSError as e:
        raise fail(f"{file}: {e.strerror}") from None
    out = sys.stdout
    if hasattr(out, "reconfigure"):
        out.reconfigure(encoding="utf-8")  # JSON Lines are UTF-8 whatever the locale says
    errors = 0
    with stream:
        for lineno, raw in enumerate(stream, 1):
            record = decide_line(engine, raw.rstrip(b"\r\n"), lineno)
            errors += "error" in record
            out.write(_json_line(record, pretty) + "\n")
            out.flush()
    if errors:
        typer.echo(f"{errors} line(s) could not be decided", err=True)


def _register_parts() -> None:
    # Each part adds its own verbs; the imports are light (heavy ones live in the commands).
    from oyster.assess.cli import register as register_assess
    from oyster.bench.cli import register as register_bench
    from oyster.judges.cli import register as register_judges
    from oyster.lingobp.cli import register as register_lingobp
    from oyster.moderate.cli import register as register_moderate
    from oyster.respond.cli import register as register_respond
    from oyster.serve.cli import register as register_serve
    from oyster.serve.console.cli import register as register_console
    from oyster.taxonomy.cli import register as register_policy
    from oyster.train.cli import register as register_train

    for register in (register_policy, register_assess, register_moderate, register_respond,
                     register_serve, register_judges, register_bench, register_lingobp,
                     register_train, register_console):
        register(app)


_register_parts()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
