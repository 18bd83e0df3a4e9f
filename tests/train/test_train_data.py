"""Input validation of SFT and preference files: clear errors with file and line number."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oyster.errors import InputError
from oyster.train import LoraSettings, TrainConfig, load_preferences, load_sft

Writer = Callable[[Path, list[dict]], Path]


def test_sft_loads_prompt_and_completion(sft_file: Path, sft_rows: list[dict]) -> None:
    examples = load_sft(sft_file)
    assert len(examples) == len(sft_rows)
    first = examples[0]
    assert [m.role for m in first.prompt] == ["system", "user"]
    assert first.completion.role == "assistant"
    assert first.as_record()["completion"] == [sft_rows[0]["messages"][-1]]


def test_preferences_load(pref_file: Path, pref_rows: list[dict]) -> None:
    examples = load_preferences(pref_file)
    assert len(examples) == len(pref_rows)
    assert examples[2].prompt[0].role == "system"
    assert examples[0].as_record()["chosen"] == pref_rows[0]["chosen"]


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path: Path,
                                                       sft_rows: list[dict]) -> None:
    p = tmp_path / "d.jsonl"
    good = json.dumps(sft_rows[1])
    p.write_text(f"{good}\n\n{good}\n{{not json\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"d\.jsonl:4: malformed JSON"):
        load_sft(p)


@pytest.mark.parametrize(("row", "message"), [
    ([1, 2], r"each line must be a JSON object like"),
    ({"text": "hi"}, r"missing `messages`"),
    ({"prompt": [], "chosen": [], "rejected": []}, r"looks like preference data"),
    ({"messages": []}, r"`messages` must be a non-empty list"),
    ({"messages": [{"role": "bot", "content": "x"}]}, r"role 'bot' is not one of"),
    ({"messages": [{"role": "user", "content": 3}]}, r"`content` must be a string"),
    ({"messages": [{"role": "user", "content": "  "}]}, r"`content` is empty"),
    ({"messages": [{"role": "user", "content": "hi"}]}, r"last message must be the assistant"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, r"no user message"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"},
                   {"role": "assistant", "content": "c"}]}, r"system message may only come"),
])
def test_sft_errors(tmp_path: Path, write_jsonl: Writer, sft_rows: list[dict], row: Any,
                    message: str) -> None:
    p = write_jsonl(tmp_path / "bad.jsonl", [sft_rows[0], row])
    with pytest.raises(InputError, match=message) as info:
        load_sft(p)
    assert "bad.jsonl:2:" in str(info.value)


@pytest.mark.parametrize(("changes", "message"), [
    ({"chosen": None}, r"missing `chosen`"),
    ({"prompt": None, "chosen": None, "rejected": None,
      "messages": [{"role": "user", "content": "x"}]}, r"looks like SFT data"),
    ({"prompt": "plain string"}, r"`prompt` must be a list of messages"),
    ({"prompt": [{"role": "assistant", "content": "x"}]}, r"must end with a user message"),
    ({"chosen": [{"role": "user", "content": "x"}]}, r"`chosen` may hold only assistant"),
    ({"rejected": "SAME"}, r"identical"),
])
def test_preference_errors(tmp_path: Path, write_jsonl: Writer, pref_rows: list[dict],
                           changes: dict[str, Any], message: str) -> None:
    row = dict(pref_rows[0])
    for key, value in changes.items():
        if value is None:
            row.pop(key)
        else:
            row[key] = row["chosen"] if value == "SAME" else value
    p = write_jsonl(tmp_path / "pairs.jsonl", [pref_rows[1], row])
    with pytest.raises(InputError, match=message) as info:
        load_preferences(p)
    assert "pairs.jsonl:2:" in str(info.value)


def test_missing_empty_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_sft(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="no examples"):
        load_preferences(empty)
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="not UTF-8"):
        load_sft(binary)


def test_config_defaults_and_validation() -> None:
    assert TrainConfig().resolved_lr("sft") == 2e-5
    assert TrainConfig(lora=LoraSettings()).resolved_lr("orpo") == 5e-5
    assert TrainConfig(learning_rate=1e-3).resolved_lr("orpo") == 1e-3
    with pytest.raises(ValueError):
        TrainConfig(max_steps=0)
    with pytest.raises(ValueError):
        TrainConfig(batch_size=0)
