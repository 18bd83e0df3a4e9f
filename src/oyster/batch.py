"""`oyster decide` over a file: one decision record per input line, in one process, on
local worker processes (`--workers`) or on Ray workers, with the same bytes out either
way, and resumable when written to a file.

Every input line gives exactly one output line of strict JSON (a record, or `{"id",
"error"}`), whatever it holds: malformed JSON, invalid UTF-8, an empty line, ids that are not
strict JSON, conversations over the policy's limits. So the number of complete lines in the
output file is how many input lines are done: `--resume` skips that many.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from oyster.engine import Engine
from oyster.errors import InputError, OysterError

Line = tuple[int, bytes]  # (line number, the line's bytes without its end)
MAX_ID_CHARS = 1_000


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


def read_cases(stream: BinaryIO) -> Iterator[Line]:
    """Every line, blank ones included (each gets its output line)."""
    for lineno, raw in enumerate(stream, 1):
        yield lineno, raw.rstrip(b"\r\n")


def json_line(record: dict[str, Any], pretty: bool = False) -> str:
    """Strict JSON (no NaN or Infinity, valid UTF-8), or an error."""
    text = json.dumps(record, ensure_ascii=False, allow_nan=False, indent=2 if pretty else None)
    text.encode("utf-8")  # lone surrogates cannot be written
    return text


def _case_id(case: Any) -> tuple[Any, str | None]:
    """The case's id if it can be written back as strict JSON, else (None, the reason)."""
    case_id = case.get("id") if isinstance(case, dict) else None
    try:
        shown = json_line({"id": case_id})
    except UnicodeEncodeError:
        return None, "the id holds a lone surrogate (not valid Unicode); replaced by null"
    except ValueError:
        return None, "the id is NaN or infinite (not strict JSON); replaced by null"
    if len(shown) > MAX_ID_CHARS + 8:
        return None, f"the id is longer than {MAX_ID_CHARS} characters; replaced by null"
    return case_id, None


def decide_record(engine: Engine, raw: bytes, lineno: int) -> dict[str, Any]:
    """One input line → one record: the decision, or {"id", "error"}. Never raises:
    whatever the line holds, the run goes on."""
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
        record: dict[str, Any] = engine.decide(case_messages(case), id=None).record()
        record["id"] = case_id
        json_line(record)
        return record
    except (ValueError, OysterError, RecursionError, UnicodeError) as e:
        reason = str(e)[:500]
    except Exception as e:  # a bug must cost one line, not the run; say it is one
        reason = f"internal error ({type(e).__name__}: {str(e)[:300]}); please report it"
    # the message may quote the input: keep it writable
    reason = reason.encode("utf-8", "replace").decode("utf-8")
    return {"id": case_id, "error": f"line {lineno}: {reason}"}


def decide_line(engine: Engine, lineno: int, raw: bytes, pretty: bool = False
                ) -> tuple[str, bool]:
    """The output for one input line (no trailing newline) and whether it was decided."""
    record = decide_record(engine, raw, lineno)
    return json_line(record, pretty), "error" not in record


@dataclass(frozen=True)
class DecideWorker:
    """Builds, on a Ray worker, the engine `oyster decide` would build (picklable)."""

    policy: str | None
    assessor: str

    def engine(self) -> Engine:
        return Engine(policy=self.policy, assessor=self.assessor)

    def check(self) -> None:
        """Raise what `engine()` would for a broken policy or an unknown assessor spec,
        without loading any model (before starting workers that each load one)."""
        from oyster.assess import ASSESSORS
        from oyster.policy import load_policy

        load_policy(self.policy)
        ASSESSORS.entry(self.assessor)

    def __call__(self) -> Any:
        engine = self.engine()

        def decide_chunk(chunk: list[Line]) -> list[tuple[str, bool]]:
            return [decide_line(engine, n, text) for n, text in chunk]

        return decide_chunk


def decide_on_ray(lines: Iterable[Line], worker: DecideWorker, address: str,
                  workers: int | None, chunk_lines: int) -> Iterator[tuple[str, bool]]:
    """`decide_line` for every line, on Ray workers, in input order."""
    from oyster.raypool import RayPool, connect

    return _decide_on_pool(RayPool(connect(address, workers), worker), lines, chunk_lines)


def decide_on_processes(lines: Iterable[Line], worker: DecideWorker, workers: int,
                        chunk_lines: int) -> Iterator[tuple[str, bool]]:
    """`decide_line` for every line, on `workers` local processes, in input order."""
    from oyster.procpool import ProcessPool

    return _decide_on_pool(ProcessPool(workers, worker), lines, chunk_lines)


def _decide_on_pool(pool: Any, lines: Iterable[Line], chunk_lines: int
                    ) -> Iterator[tuple[str, bool]]:
    """The pool's outputs (a RayPool or a ProcessPool: `map` over chunks, `close`)."""
    from oyster.raypool import chunked

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
