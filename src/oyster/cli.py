"""`oyster <verb>`: the command line on top of every part.

Each part contributes its verbs through a `register(app)` function in its own `cli.py`;
this module only assembles them and owns the core verb, `decide`.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from oyster.cli_options import AssessorOption, PolicyOption, RayOption, RayWorkersOption
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


@app.command()
def decide(
    file: Annotated[str, typer.Argument(help="JSONL file of cases, or - for standard input")] = "-",
    policy: PolicyOption = None,
    assessor: AssessorOption = "default",
    pretty: Annotated[bool, typer.Option("--pretty", help="indent each record (not JSONL)")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", dir_okay=False, help="write the records to this file (fsynced as they "
                                            "go, with a progress bar) instead of stdout")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="continue --out: skip the input lines it already answers")] = False,
    ray: RayOption = None,
    ray_workers: RayWorkersOption = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, max=256, help="worker processes on this machine, each loading "
                                          "the assessor once; same records, same order")] = 1,
    chunk: Annotated[int, typer.Option(
        "--chunk", min=1, max=100_000, help="lines decided together (one assessor call, "
                                            "its texts embedded in batches); with --workers "
                                            "or --ray, lines per task")] = 64,
) -> None:
    """Read cases (JSONL: {"id", "messages"} or {"id", "prompt"}) and write one decision
    record per line, same order and ids. A line that cannot be decided (malformed JSON,
    invalid UTF-8, bad messages, over the policy's limits) gives {"id", "error"} and the run
    goes on: lines in = lines out, each strict JSON. With --workers N (processes here) or
    --ray (Ray workers) the same records, byte for byte, come from N workers."""
    from oyster.batch import (
        DecideWorker,
        decide_chunk,
        decide_on_processes,
        decide_on_ray,
        durable_flush,
        open_output,
        read_chunks,
    )

    if resume and out is None:
        raise fail("--resume needs --out")
    if workers > 1 and ray is not None:
        raise fail("--workers runs processes here and --ray on a Ray cluster: choose one "
                   "(--ray-workers sets the number of Ray workers)")
    if pretty and out is not None:
        raise fail("--pretty writes several lines per record: it cannot be resumed; leave "
                   "out --out")
    try:
        worker = DecideWorker(policy=str(policy) if policy else None, assessor=assessor)
        if workers > 1:
            worker.check()
        # bytes: a line that is not UTF-8 gets its error record, the run goes on
        stream = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
        sink, done = open_output(out, resume) if out is not None else (sys.stdout, 0)
    except OysterError as e:
        raise fail(e) from None
    except OSError as e:
        raise fail(f"{e.filename or file}: {e.strerror}") from None
    if out is None and hasattr(sink, "reconfigure"):
        sink.reconfigure(encoding="utf-8")  # JSON Lines are UTF-8 whatever the locale says
    errors = 0
    with stream, _progress(file, out, done) as advance:
        chunks = read_chunks(stream, chunk, skip=done)
        try:
            if ray is not None:
                outputs = decide_on_ray(chunks, worker, ray, ray_workers)
            elif workers > 1:
                outputs = decide_on_processes(chunks, worker, workers)
            else:
                engine = worker.engine()
                outputs = itertools.chain.from_iterable(
                    decide_chunk(engine, lines, pretty) for lines in chunks)
            for text, ok in outputs:
                errors += not ok
                sink.write(text + "\n")
                if out is None:
                    sink.flush()
                advance()
        except OysterError as e:
            raise fail(e) from None
        finally:
            if out is not None:
                durable_flush(sink)
                sink.close()
    if errors:
        typer.echo(f"{errors} line(s) could not be decided", err=True)


@contextmanager
def _progress(file: str, out: Path | None, done: int) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr when the records go to a file; else nothing."""
    if out is None or file == "-":
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with open(file, "rb") as f:
        total = sum(1 for _ in f)
    with Progress("decide", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as progress:
        task = progress.add_task("decide", total=total, completed=done)
        yield lambda: progress.advance(task)


def _register_parts() -> None:
    # Each part adds its own verbs; the imports are light (heavy ones live in the commands).
    from oyster.assess.cli import register as register_assess
    from oyster.bench.cli import register as register_bench
    from oyster.judges.cli import register as register_judges
    from oyster.lingobp.cli import register as register_lingobp
    from oyster.moderate.cli import register as register_moderate
    from oyster.policy.cli import register as register_policy
    from oyster.respond.cli import register as register_respond
    from oyster.serve.cli import register as register_serve
    from oyster.serve.console.cli import register as register_console
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
