"""No input kills anything: the seeded hostile corpus (tests/hostile.py) through
`oyster decide`, in process and as a real subprocess (the proxy's half is in
tests/serve/test_hostile_bodies.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hostile import as_lines, corpus

from oyster.batch import decide_record, json_line
from oyster.engine import Engine, read_conversation
from oyster.errors import InputError


def _strict(line: str) -> dict:
    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in output")

    line.encode("utf-8")  # no lone surrogates
    return json.loads(line, parse_constant=no_constants)


@pytest.fixture(scope="module")
def lexicon_engine(policy) -> Engine:
    return Engine(policy, "lexicon")


def test_every_hostile_line_gets_one_strict_json_record(lexicon_engine):
    kinds: Counter[tuple[str, bool]] = Counter()
    for i, case in enumerate(corpus(seed=7, n=400), 1):
        record = decide_record(lexicon_engine, case.body, i)
        parsed = _strict(json_line(record))
        assert "internal error" not in parsed.get("error", ""), (case.kind, parsed)
        assert ("error" in parsed) != ("strategy" in parsed)
        kinds[(case.kind, "error" in parsed)] += 1
    # the corpus reaches both outcomes where it should
    assert kinds[("ordinary", False)] and kinds[("tool_calls", False)]
    assert kinds[("invalid_json", True)] and kinds[("invalid_utf8", True)]
    assert not kinds[("ordinary", True)]


@pytest.mark.parametrize(("line", "fragment"), [
    (b'{"id": NaN, "prompt": "hi"}', "NaN or infinite"),
    (b'{"id": "\\ud800", "prompt": "hi"}', "lone surrogate"),
    (b'{"id": 1, "prompt": "hi"' + b"]" * 3, "malformed JSON"),
    (b'{"id": ' + b"9" * 5_000 + b', "prompt": "hi"}', "number is too long"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"id": 1, "prompt": "caf\xc3"}', "not valid UTF-8"),
    (b"", "empty line"),
])
def test_unusable_lines_say_why(lexicon_engine, line, fragment):
    record = decide_record(lexicon_engine, line, 3)
    assert record["error"].startswith("line 3: ") and fragment in record["error"]
    _strict(json.dumps(record, ensure_ascii=False))


def test_tool_calling_conversations_are_read_and_what_is_ignored_is_said(lexicon_engine):
    messages = [
        {"role": "developer", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Seville?"},
                                     {"type": "image_url", "image_url": {"url": "data:,"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "34 °C, sunny"},
    ]
    read = read_conversation(messages)
    assert [m.role for m in read.messages] == ["system", "user", "assistant", "user"]
    assert read.messages[-1].content == "[tool result] 34 °C, sunny"
    assert read.ignored == ["messages[1]: 1 image_url part(s) not read",
                            "messages[2]: 1 tool call(s) not read"]
    decision = lexicon_engine.decide(messages)
    assert decision.notes[:2] == read.ignored
    with pytest.raises(InputError, match=r"messages\[0\].content\[0\].text: must be a string"):
        read_conversation([{"role": "user", "content": [{"type": "text", "text": 5}]}])


def test_decide_cli_lines_in_equal_lines_out(tmp_path):
    cases = [c for c in corpus(seed=11, n=150) if c.kind != "huge"]
    src = tmp_path / "hostile.jsonl"
    src.write_bytes(as_lines(cases) + b'{"id": "bad-bytes", "prompt": "\xff"}\n')
    out = subprocess.run([sys.executable, "-m", "oyster.cli", "decide", str(src),
                          "--assessor", "lexicon"], capture_output=True, timeout=600,
                         env=dict(os.environ, PYTHONUNBUFFERED="1", LC_ALL="C"))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(cases) + 1
    records = [_strict(line) for line in lines[:-1]]
    assert records[-1]["error"].startswith(f"line {len(cases) + 1}: not valid UTF-8")
    assert not any("internal error" in r.get("error", "") for r in records)
