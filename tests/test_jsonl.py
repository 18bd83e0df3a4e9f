"""The one JSON Lines reader: a record holding U+2028 (or any other separator that
`str.splitlines()` splits on) is one line; errors are `InputError`s naming file and line.

Every reader of the package goes through it; each is checked here on a file whose first record
holds the separators inside a JSON string, as pydantic and `json.dumps(ensure_ascii=False)`
write them (unescaped).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from oyster._jsonl import jsonl_objects, read_jsonl
from oyster.errors import InputError

# U+2028 and U+2029 (line and paragraph separators) and U+0085 (next line): JSON writers leave
# them unescaped; each ends a line for str.splitlines(), none does for JSON Lines
SEPARATORS = "\u2028\u2029\x85"
TEXT = f"first part{SEPARATORS}second part"


def _write(path: Path, *records: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    "utf-8")
    assert SEPARATORS in path.read_text("utf-8")  # written raw, not escaped
    return path


def _bench_prompts(tmp: Path) -> str:
    from oyster.bench.datasets import load_prompts
    items = load_prompts(_write(tmp / "p.jsonl", {"id": "a", "prompt": TEXT},
                                {"id": "b", "prompt": "hi"}))
    assert [i.id for i in items] == ["a", "b"]
    return items[0].messages[-1].content


def _lingobp_queries(tmp: Path) -> str:
    from oyster.lingobp.queries import load_queries
    queries = load_queries(_write(tmp / "q.jsonl", {"id": "a", "prompt": TEXT},
                                  {"id": "b", "prompt": "hi"}))
    assert [q.id for q in queries] == ["a", "b"]
    return queries[0].messages[-1].content


def _train_sft(tmp: Path) -> str:
    from oyster.train import load_sft
    row = {"messages": [{"role": "user", "content": TEXT},
                        {"role": "assistant", "content": "ok"}]}
    examples = load_sft(_write(tmp / "sft.jsonl", row, row))
    assert len(examples) == 2
    return examples[0].prompt[-1].content


def _assess_examples(tmp: Path) -> str:
    from oyster.assess.dataset import load_jsonl
    row = {"text": TEXT, "lang": "en", "level": "R0", "user_type": "benign",
           "categories": ["none"], "form": "question", "source": "ours", "group": "g"}
    examples = load_jsonl(_write(tmp / "examples.jsonl", row, {**row, "text": "hi"}))
    assert [e.text for e in examples][1:] == ["hi"]
    return examples[0].text


class Note(BaseModel):
    text: str


def _run_records(tmp: Path) -> str:
    path = tmp / "notes.jsonl"
    path.write_text(Note(text=TEXT).model_dump_json() + "\n" + '{"text": "torn', "utf-8")
    notes = list(read_jsonl(path, Note))
    assert len(notes) == 1  # the unfinished last line is passed over
    return notes[0].text


READERS: dict[str, Callable[[Path], str]] = {
    "bench.datasets.load_prompts": _bench_prompts,
    "lingobp.queries.load_queries": _lingobp_queries,
    "train.load_sft": _train_sft,
    "assess.dataset.load_jsonl": _assess_examples,
    "_jsonl.read_jsonl": _run_records,
}


@pytest.mark.parametrize("reader", list(READERS))
def test_a_record_holding_line_separators_is_read_whole(tmp_path: Path, reader: str) -> None:
    assert READERS[reader](tmp_path) == TEXT


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"a": TEXT}, ensure_ascii=False) + "\n\n[1, 2]\n", "utf-8")
    with pytest.raises(InputError, match=r"x\.jsonl:3: each line must be a JSON object, got list"):
        list(jsonl_objects(path))
    path.write_text('{"a": 1}\n{"a": \n', "utf-8")
    with pytest.raises(InputError, match=r"x\.jsonl:2: malformed JSON: .* \(column 7\)"):
        list(jsonl_objects(path))


@pytest.mark.parametrize(("content", "message"), [
    (None, "file not found"),
    (b'{"a": "\xff"}\n', "not UTF-8 text"),
])
def test_unreadable_files_are_input_errors(tmp_path: Path, content: bytes | None,
                                           message: str) -> None:
    path = tmp_path / "x.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        list(jsonl_objects(path))
    with pytest.raises(InputError, match="not a file"):
        list(jsonl_objects(tmp_path))
