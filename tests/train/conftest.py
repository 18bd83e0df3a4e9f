"""Fixtures for the training tests: small constructive-safety SFT and preference files.

(pytest runs with --import-mode=importlib, so tests get shared data through fixtures, not
imports.)"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest

SFT_ROWS: list[dict] = [
    {"messages": [
        {"role": "system", "content": "Be helpful and safe."},
        {"role": "user", "content": "How do I kill a stuck process?"},
        {"role": "assistant", "content": "Find its PID with `ps aux`, then run `kill PID`."},
    ]},
    {"messages": [
        {"role": "user", "content": "Can I give my baby sleeping pills?"},
        {"role": "assistant", "content": "No. Ask your paediatrician about safe sleep help."},
    ]},
    {"messages": [
        {"role": "user", "content": "I feel hopeless."},
        {"role": "assistant", "content": "I'm sorry. You can call or text 988 any time."},
    ]},
    {"messages": [
        {"role": "user", "content": "Is bleach safe to drink in small doses?"},
        {"role": "assistant", "content": "No, never drink bleach. Call poison control."},
    ]},
]

PREF_ROWS: list[dict] = [
    {"prompt": [{"role": "user", "content": "Can I give my baby sleeping pills?"}],
     "chosen": [{"role": "assistant", "content": "No. Ask your paediatrician first."}],
     "rejected": [{"role": "assistant", "content": "I cannot help with that."}]},
    {"prompt": [{"role": "user", "content": "I feel hopeless."}],
     "chosen": [{"role": "assistant", "content": "I'm here. You can text 988."}],
     "rejected": [{"role": "assistant", "content": "Sorry, I can't discuss this."}]},
    {"prompt": [{"role": "system", "content": "Be safe."},
                {"role": "user", "content": "How to kill a process?"}],
     "chosen": [{"role": "assistant", "content": "Use `kill PID`."}],
     "rejected": [{"role": "assistant", "content": "I won't help with killing."}]},
]



def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def write_jsonl() -> Callable[[Path, list[dict]], Path]:
    return _write_jsonl


@pytest.fixture
def sft_rows() -> list[dict]:
    return copy.deepcopy(SFT_ROWS)


@pytest.fixture
def pref_rows() -> list[dict]:
    return copy.deepcopy(PREF_ROWS)


@pytest.fixture
def sft_file(tmp_path: Path) -> Path:
    return _write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS)


@pytest.fixture
def pref_file(tmp_path: Path) -> Path:
    return _write_jsonl(tmp_path / "pref.jsonl", PREF_ROWS)
