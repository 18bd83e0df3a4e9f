"""`oyster decide` over a file: one decision record per input line, in one process or on
Ray workers, with the same bytes out either way, and resumable when written to a file.

Each non-blank input line gives exactly one output line (a record, or `{"id", "error"}`),
so the number of complete lines in the output file is how many input lines are done:
`--resume` skips that many.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from oyster.engine import Engine
from oyster.errors import InputError, OysterError

Line = tuple[int, str]  # (line number, text)


def case_messages(case: Any) -> Any:
    if not isinstance(case, dict):
        raise ValueError("each line must be a JSON object")
    if "messages" in case:
        return case["messages"]
    if "prompt" in case:
        if not isinstance(case["prompt"], str):
            raise ValueError("'prompt' must be a string")
        return case["prompt"]
    raise ValueError("a case needs 'messages' or 'prompt'")


def read_cases(stream: TextIO) -> Iterator[Line]:
    for lineno, line in enumerate(stream, 1):
        if line.strip():
            yield lineno, line


def decide_line(engine: Engine, lineno: int, line: str, pretty: bool = False
                ) -> tuple[str, bool]:
    """The output for one input line (no trailing newline) and whether it was decided."""
    case_id: Any = None
    ok = True
    try:
        case = json.loads(line)
        case_id = case.get("id") if isinstance(case, dict) else None
        record: dict[str, Any] = engine.decide(case_messages(case), id=None).record()
        record["id"] = case_id
    except (json.JSONDecodeError, ValueError, OysterError) as e:
        ok = False
        reason = f"line {lineno}: " + (f"malformed JSON: {e.msg}"
                                       if isinstance(e, json.JSONDecodeError) else str(e))
        record = {"id": case_id, "error": reason}
    return json.dumps(record, ensure_ascii=False, indent=2 if pretty else None), ok


@dataclass(frozen=True)
class DecideWorker:
    """Builds, on a Ray worker, the engine `oyster decide` would build (picklable)."""

    policy: str | None
    assessor: str

    def engine(self) -> Engine:
        return Engine(policy=self.policy, assessor=self.assessor)

    def __call__(self) -> Any:
        engine = self.engine()

        def decide_chunk(chunk: list[Line]) -> list[tuple[str, bool]]:
            return [decide_line(engine, n, text) for n, text in chunk]

        return decide_chunk


def decide_on_ray(lines: Iterable[Line], worker: DecideWorker, address: str,
                  workers: int | None, chunk_lines: int) -> Iterator[tuple[str, bool]]:
    """`decide_line` for every line, on Ray workers, in input order."""
    from oyster.raypool import RayPool, chunked, connect

    pool: RayPool[Line, tuple[str, bool]] = RayPool(connect(address, workers), worker)
    try:
        for outputs in pool.map(chunked(lines, chunk_lines)):
            yield from outputs
    finally:
        pool.close()


def lines_done(out: Path) -> int:
    """Complete output lines already in `out` (a torn last line is cut first)."""
    from oyster._jsonl import repair_torn_tail

    if not out.exists():
        return 0
    repair_torn_tail(out)
    with open(out, "rb") as f:
        return sum(1 for _ in f)


def open_output(out: Path, resume: bool) -> tuple[TextIO, int]:
    """The output file to append to, and how many input lines it already answers."""
    if out.exists() and out.stat().st_size and not resume:
        raise InputError(f"{out} exists; pass --resume to continue it or choose another --out")
    done = lines_done(out) if resume else 0
    out.parent.mkdir(parents=True, exist_ok=True)
    return open(out, "a" if resume else "w", encoding="utf-8"), done


def durable_flush(stream: TextIO) -> None:
    stream.flush()
    if stream.fileno() > 2:  # a file, not a terminal or pipe
        os.fsync(stream.fileno())
