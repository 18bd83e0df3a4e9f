"""`oyster decide` decides a chunk of lines with one assessor call (`batch.decide_records`)
and still answers every line as it would alone: order, error records, budgets."""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
from collections.abc import Sequence

from oyster.assess.base import Assessment
from oyster.assess.lexicon import LexiconAssessor
from oyster.batch import decide_record, decide_records, read_cases, read_chunks
from oyster.budget import charge_embedding
from oyster.engine import Engine
from oyster.policy import load_policy
from oyster.types import Message

PROMPTS = ["How do I kill a stuck process in Linux?", "What is a good recipe for banana bread?",
           "I feel like ending it all. Nothing matters anymore.", "hello there"]


class Recording(LexiconAssessor):
    """The lexicon assessor, noting how many conversations each call reads; it charges what it
    reads as an embedder would, and refuses to read a text holding 'BOOM'."""

    def __init__(self, *a: object, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.calls: list[int] = []

    def assess(self, messages: Sequence[Message]) -> Assessment:
        self.calls.append(1)
        return self._read(messages)

    def _read(self, messages: Sequence[Message]) -> Assessment:
        text = messages[-1].content
        if "BOOM" in text:
            raise RuntimeError("the model cannot read this")
        # three readings of each user text, as a de-obfuscating assessor may embed
        charge_embedding([v for m in messages if m.role == "user"
                          for v in (m.content, m.content[::-1], m.content.upper())])
        return super().assess(messages)

    def assess_many(self, conversations: Sequence[Sequence[Message]]) -> list[Assessment]:
        self.calls.append(len(conversations))
        return [self._read(m) for m in conversations]


def engine(**limits: object) -> tuple[Engine, Recording]:
    policy = load_policy(None)
    if limits:
        policy = policy.model_copy(update={"limits": policy.limits.model_copy(update=limits)})
    assessor = Recording(policy)
    return Engine(policy=policy, assessor=assessor), assessor


def lines(raw: list[str]) -> list[tuple[int, bytes]]:
    return [(i, s.encode("utf-8")) for i, s in enumerate(raw, 1)]


def case(i: int, prompt: str) -> str:
    return json.dumps({"id": i, "prompt": prompt})


def test_a_chunk_is_one_assessor_call_with_the_records_of_line_by_line():
    raw = [case(i, PROMPTS[i % 4]) for i in range(10)]
    eng, assessor = engine()
    chunked = decide_records(eng, lines(raw))
    assert assessor.calls == [10]  # line by line it was ten calls of one
    alone = [decide_record(eng, r, n) for n, r in lines(raw)]
    assert assessor.calls == [10, *[1] * 10]
    assert chunked == alone


def test_bad_lines_inside_a_chunk_get_their_error_records_and_the_others_decide():
    raw = [case(0, PROMPTS[0]), "{not json", case(2, PROMPTS[1]), "",
           json.dumps({"id": 4, "messages": [{"role": "robot", "content": "x"}]}),
           case(5, "BOOM goes the model"), case(6, PROMPTS[2])]
    eng, assessor = engine()
    records = decide_records(eng, lines(raw))
    assert len(records) == len(raw)
    assert [r.get("id") for r in records] == [0, None, 2, None, 4, 5, 6]
    errors = {i: r["error"] for i, r in enumerate(records) if "error" in r}
    assert set(errors) == {1, 3, 4, 5}
    assert errors[1].startswith("line 2: malformed JSON")
    assert errors[3] == "line 4: empty line"
    assert errors[5].startswith("line 6: internal error (RuntimeError")
    for i in (0, 2, 6):
        assert records[i]["strategy"] and "error" not in records[i]
    # the group call failed on line 6, so its mates were decided again one by one
    assert assessor.calls[0] == 4 and assessor.calls[1:] == [1, 1, 1, 1]
    assert records == [decide_record(eng, r, n) for n, r in lines(raw)]


def test_a_group_is_held_to_one_requests_budget_and_each_line_to_its_own():
    # each short line fits max_embedded_chars alone (3 x 20 chars), two together do not;
    # the last line is over it alone
    eng, assessor = engine(max_embedded_chars=100)
    raw = [case(i, "x" * 19 + str(i)) for i in range(6)] + [case(6, "yz" * 20)]
    records = decide_records(eng, lines(raw))
    assert [r["id"] for r in records] == list(range(7))
    assert all("error" not in r for r in records[:6])
    assert "max_embedded_chars" in records[6]["error"]
    assert 2 in assessor.calls  # a group was tried, went over, and was decided line by line
    assert records == [decide_record(eng, r, n) for n, r in lines(raw)]


def test_read_chunks_numbers_lines_as_read_cases_does():
    data = b'{"a": 1}\r\n\n{"b": 2}\nlast without newline'
    every = list(read_cases(io.BytesIO(data)))
    for size in (1, 2, 3, 10):
        chunks = list(read_chunks(io.BytesIO(data), size))
        assert [x for c in chunks for x in c] == every
        assert all(len(c) <= size for c in chunks)
    assert [x for c in read_chunks(io.BytesIO(data), 3, skip=2) for x in c] == every[2:]
    assert list(read_chunks(io.BytesIO(b""), 4)) == []
    assert [x for c in read_chunks(io.BytesIO(b"a\n\n"), 4) for x in c] == [(1, b"a"), (2, b"")]


def test_a_pipe_fed_one_line_at_a_time_is_answered_line_by_line():
    """A caller that writes a line and waits for its record before the next must not wait
    for a chunk to fill."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "oyster.cli", "decide", "-", "--assessor",
                             "lexicon", "--chunk", "64"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for i in range(3):
            proc.stdin.write((case(i, PROMPTS[i]) + "\n").encode())
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, "no answer to a line while the next one is held back"
            assert json.loads(proc.stdout.readline())["id"] == i
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_cli_hands_the_assessor_a_chunk(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from oyster import batch
    from oyster.cli import app

    eng, assessor = engine()
    monkeypatch.setattr(batch.DecideWorker, "engine", lambda self: eng)
    src = tmp_path / "cases.jsonl"
    src.write_text("".join(case(i, PROMPTS[i % 4]) + "\n" for i in range(12)) + "{bad\n")
    out = CliRunner().invoke(app, ["decide", str(src), "--chunk", "5"])
    assert out.exit_code == 0, out.output
    records = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["id"] for r in records] == [*range(12), None]
    assert "error" in records[-1]
    assert assessor.calls == [5, 5, 2]
