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
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from oyster.budget import work_budget
from oyster.engine import Engine
from oyster.errors import InputError, OysterError
from oyster.types import ConversationText

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


def _read_line(engine: Engine, raw: bytes) -> tuple[Any, ConversationText]:
    """The case's id and its conversation as read, checked against the policy's limits;
    raises (ValueError, OysterError, ...) with the reason the line cannot be decided."""
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
        raise _IdProblem(case_id, id_problem)
    try:
        return case_id, engine.read(case_messages(case))
    except Exception as e:
        raise _IdProblem(case_id, e) from e


class _IdProblem(Exception):
    """A line whose id is known but which cannot be decided (its error record keeps the id)."""

    def __init__(self, case_id: Any, reason: Exception | str) -> None:
        super().__init__(str(reason))
        self.case_id = case_id
        self.reason = reason


def _error_record(lineno: int, case_id: Any, e: BaseException) -> dict[str, Any]:
    if isinstance(e, _IdProblem):
        case_id = e.case_id
        e = e.reason if isinstance(e.reason, BaseException) else ValueError(e.reason)
    if isinstance(e, (ValueError, OysterError, RecursionError, UnicodeError)):
        reason = str(e)[:500]
    else:  # a bug must cost one line, not the run; say it is one
        reason = f"internal error ({type(e).__name__}: {str(e)[:300]}); please report it"
    # the message may quote the input: keep it writable
    reason = reason.encode("utf-8", "replace").decode("utf-8")
    return {"id": case_id, "error": f"line {lineno}: {reason}"}


def _record(decision: Any, case_id: Any) -> dict[str, Any]:
    record: dict[str, Any] = decision.record()
    record["id"] = case_id
    json_line(record)  # raises where the record cannot be written as strict JSON
    return record


def decide_record(engine: Engine, raw: bytes, lineno: int) -> dict[str, Any]:
    """One input line → one record: the decision, or {"id", "error"}. Never raises:
    whatever the line holds, the run goes on."""
    case_id: Any = None
    try:
        case_id, text = _read_line(engine, raw)
        return _record(engine.decide(text, id=None), case_id)
    except Exception as e:
        return _error_record(lineno, case_id, e)


def decide_records(engine: Engine, chunk: Sequence[Line]) -> list[dict[str, Any]]:
    """`decide_record` for every line of `chunk`, in order, with one assessor call
    (`Engine.decide_many`) for the lines that can be decided together, so the encoder
    embeds their texts in batches. The records are those `decide_record` gives line by
    line: a line that cannot be read gets its error record and its chunk-mates are decided;
    the group is held to one request's work budget (`limits.max_embedded_chars`,
    `max_decide_seconds`), so each of its lines is within its own; where the group call
    fails (over that budget, or the assessor raises on one conversation) each of its lines
    is decided alone, under its own budget, as it would be line by line."""
    records: list[dict[str, Any] | None] = [None] * len(chunk)
    ready: list[tuple[int, Any, ConversationText]] = []
    for i, (lineno, raw) in enumerate(chunk):
        try:
            case_id, text = _read_line(engine, raw)
        except Exception as e:
            records[i] = _error_record(lineno, None, e)
        else:
            ready.append((i, case_id, text))
    for group in _budget_groups(engine, ready):
        decisions = None
        if len(group) > 1:
            try:
                with work_budget(engine.policy.limits):
                    decisions = engine.decide_many([text for _, _, text in group])
            except Exception:  # over the group's budget, or one conversation breaks it
                decisions = None
        for k, (i, case_id, text) in enumerate(group):
            lineno = chunk[i][0]
            try:
                records[i] = _record(decisions[k] if decisions is not None
                                     else engine.decide(text, id=None), case_id)
            except Exception as e:
                records[i] = _error_record(lineno, case_id, e)
    return [r for r in records if r is not None]


def _budget_groups(engine: Engine, ready: list[tuple[int, Any, ConversationText]]
                   ) -> Iterator[list[tuple[int, Any, ConversationText]]]:
    """`ready` in groups whose characters together stay under half of one request's
    `max_embedded_chars` (a longer line is a group of its own), so a group seldom goes
    over the budget it is held to and has to be decided again line by line."""
    cap = engine.policy.limits.max_embedded_chars // 2
    group: list[tuple[int, Any, ConversationText]] = []
    size = 0
    for item in ready:
        chars = sum(len(m.content) for m in item[2].messages)
        if group and size + chars > cap:
            yield group
            group, size = [], 0
        group.append(item)
        size += chars
    if group:
        yield group


def decide_line(engine: Engine, lineno: int, raw: bytes, pretty: bool = False
                ) -> tuple[str, bool]:
    """The output for one input line (no trailing newline) and whether it was decided."""
    record = decide_record(engine, raw, lineno)
    return json_line(record, pretty), "error" not in record


def decide_chunk(engine: Engine, chunk: Sequence[Line], pretty: bool = False
                 ) -> list[tuple[str, bool]]:
    """`decide_line` for every line of `chunk`, decided together (`decide_records`)."""
    return [(json_line(r, pretty), "error" not in r) for r in decide_records(engine, chunk)]


def read_chunks(stream: BinaryIO, size: int, skip: int = 0) -> Iterator[list[Line]]:
    """The lines of `stream` (as `read_cases` numbers them), after the first `skip`, in
    chunks of at most `size`. From a file the chunks are full; from a pipe or a terminal a
    chunk also ends where the lines received so far end, so a caller feeding one line at a
    time and waiting for its answer gets it."""
    read1 = getattr(stream, "read1", None)
    try:
        regular = stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):
        regular = not hasattr(stream, "fileno") or read1 is None  # in memory: all there
    lineno = 0
    parts: list[bytes] = []
    chunk: list[Line] = []
    while True:
        data = read1(1 << 16) if read1 is not None else stream.read(1 << 16)
        if not data:
            break
        if b"\n" not in data:
            parts.append(data)
            continue
        lines = (b"".join(parts) + data).split(b"\n")
        parts = [lines.pop()]
        for raw in lines:
            lineno += 1
            if lineno > skip:
                chunk.append((lineno, raw.rstrip(b"\r\n")))
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
        if chunk and not regular:
            yield chunk
            chunk = []
    tail = b"".join(parts)
    if tail:
        lineno += 1
        if lineno > skip:
            chunk.append((lineno, tail.rstrip(b"\r\n")))
    if chunk:
        yield chunk


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

        def decide(chunk: list[Line]) -> list[tuple[str, bool]]:
            return decide_chunk(engine, chunk)

        return decide


def decide_on_ray(chunks: Iterable[list[Line]], worker: DecideWorker, address: str,
                  workers: int | None) -> Iterator[tuple[str, bool]]:
    """`decide_line` for every line, on Ray workers, in input order."""
    from oyster.raypool import RayPool, connect

    return _decide_on_pool(RayPool(connect(address, workers), worker), chunks)


def decide_on_processes(chunks: Iterable[list[Line]], worker: DecideWorker, workers: int
                        ) -> Iterator[tuple[str, bool]]:
    """`decide_line` for every line, on `workers` local processes, in input order."""
    from oyster.procpool import ProcessPool

    return _decide_on_pool(ProcessPool(workers, worker), chunks)


def _decide_on_pool(pool: Any, chunks: Iterable[list[Line]]) -> Iterator[tuple[str, bool]]:
    """The pool's outputs (a RayPool or a ProcessPool: `map` over chunks, `close`)."""
    try:
        for outputs in pool.map(chunks):
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
