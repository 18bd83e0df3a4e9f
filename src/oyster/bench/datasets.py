"""Benchmark datasets: Strata-Sword (the authors' xlsx files), the constructive set (JSONL,
ours or a user's) and over-refusal prompts (JSONL).

Every loader returns `BenchItem`s: an id, the conversation to send, and the labels the
benchmark groups its numbers by. Bad files raise `InputError` naming the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from oyster._jsonl import jsonl_objects
from oyster._packaged import packaged_path
from oyster.errors import InputError, field_problem
from oyster.types import Language, Level, Message, UserType, detect_language


class BenchItem(BaseModel):
    """One prompt of a benchmark, with the labels its numbers are grouped by."""

    model_config = ConfigDict(frozen=True)

    id: str
    messages: list[Message]
    language: Language
    category: str | None = None
    level: str | None = Field(default=None, description="R0-R2, or a Strata-Sword level '1'..'3'")
    attack_method: str | None = None
    user_role: str | None = None
    user_profile: UserType | None = None
    reference_replies: list[str] = Field(default_factory=list)


# --- Strata-Sword -----------------------------------------------------------------------

STRATA_FILE = re.compile(r"strata_sword_(en|cn|zh)_level_(\d+)\.xlsx$")
# The prompt column is named differently per level; the first header that matches wins.
STRATA_PROMPT_HEADERS = ("jailbreak instruction", "攻击指令", "prompt", "instruction")
STRATA_METHOD_HEADERS = ("attack method", "攻击方法")
NO_METHOD = "none"


def _strata_header_index(header: tuple[Any, ...], names: tuple[str, ...]) -> int | None:
    cleaned = [str(h).strip().lower() if h is not None else "" for h in header]
    for name in names:
        if name in cleaned:
            return cleaned.index(name)
    return None


def load_strata_sword(directory: str | Path, levels: set[int] | None = None,
                      languages: set[str] | None = None) -> list[BenchItem]:
    """Read `strata_sword_{en,cn}_level_{N}.xlsx` files from `directory`.

    Ids are `{lang}-L{level}-{row:03d}` (row = 1-based data row), stable across runs."""
    import openpyxl

    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory of Strata-Sword xlsx files")
    files = sorted(p for p in root.iterdir() if STRATA_FILE.search(p.name))
    if not files:
        raise InputError(f"{root}: no strata_sword_<lang>_level_<N>.xlsx files found")
    items: list[BenchItem] = []
    for path in files:
        m = STRATA_FILE.search(path.name)
        assert m is not None
        lang: Language = "en" if m.group(1) == "en" else "zh"
        level = int(m.group(2))
        if (levels and level not in levels) or (languages and lang not in languages):
            continue
        try:
            book = openpyxl.load_workbook(path, read_only=True)
        except Exception as e:  # openpyxl raises assorted zip/xml errors
            raise InputError(f"{path}: cannot read as xlsx: {e}") from e
        rows = list(book.worksheets[0].iter_rows(values_only=True))
        book.close()
        if not rows:
            raise InputError(f"{path}: empty sheet")
        prompt_col = _strata_header_index(rows[0], STRATA_PROMPT_HEADERS)
        method_col = _strata_header_index(rows[0], STRATA_METHOD_HEADERS)
        if prompt_col is None:
            raise InputError(f"{path}: no prompt column (looked for {STRATA_PROMPT_HEADERS})")
        for i, row in enumerate(rows[1:], 1):
            prompt = row[prompt_col]
            if prompt is None or not str(prompt).strip():
                continue
            method = str(row[method_col]).strip() if method_col is not None else ""
            if not method or method.lower() == "none":
                method = NO_METHOD
            items.append(BenchItem(id=f"{lang}-L{level}-{i:03d}",
                                   messages=[Message(role="user", content=str(prompt))],
                                   language=lang, level=str(level), attack_method=method))
    if not items:
        raise InputError(f"{root}: no prompts for levels {sorted(levels or [])} "
                         f"and languages {sorted(languages or [])}")
    return items


# --- JSONL datasets ---------------------------------------------------------------------


class ConstructiveRecord(BaseModel):
    """One line of a constructive-benchmark file."""

    model_config = ConfigDict(extra="forbid")

    id: str
    query: str | None = None
    messages: list[Message] | None = None
    level: Level
    category: str
    user_role: str = ""
    user_profile: UserType | None = None
    language: Language | None = None
    reference_replies: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_input(self) -> ConstructiveRecord:
        if (self.query is None) == (self.messages is None):
            raise ValueError("give exactly one of 'query' or 'messages'")
        if self.messages is not None and not any(m.role == "user" for m in self.messages):
            raise ValueError("'messages' needs at least one user message")
        return self


class PromptRecord(BaseModel):
    """One line of an over-refusal file: a benign prompt that may sound risky."""

    model_config = ConfigDict(extra="forbid")

    id: str
    prompt: str | None = None
    messages: list[Message] | None = None
    category: str | None = None
    language: Language | None = None
    note: str = ""

    @model_validator(mode="after")
    def _one_input(self) -> PromptRecord:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        return self


def _validate(model: type[BaseModel], data: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InputError(f"{where}: {field_problem(e, '<line>')}") from None


def _unique(items: list[BenchItem], path: Path) -> list[BenchItem]:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise InputError(f"{path}: duplicate id {item.id!r}")
        seen.add(item.id)
    if not items:
        raise InputError(f"{path}: no items")
    return items


def packaged(name: str) -> Path:
    return packaged_path("oyster.bench", f"data/{name}")


CONSTRUCTIVE_STARTER = "constructive_starter.jsonl"
OVER_REFUSAL_STARTER = "over_refusal_starter.jsonl"


def load_constructive(path: str | Path | None = None) -> list[BenchItem]:
    """The constructive set at `path` (default: our packaged starter set)."""
    p = Path(path) if path else packaged(CONSTRUCTIVE_STARTER)
    items = []
    for lineno, data in jsonl_objects(p):
        r: ConstructiveRecord = _validate(ConstructiveRecord, data, f"{p}:{lineno}")
        messages = r.messages or [Message(role="user", content=r.query or "")]
        last_user = next(m.content for m in reversed(messages) if m.role == "user")
        items.append(BenchItem(id=r.id, messages=messages,
                               language=r.language or detect_language(last_user),
                               category=r.category, level=r.level, user_role=r.user_role or None,
                               user_profile=r.user_profile,
                               reference_replies=r.reference_replies))
    return _unique(items, p)


def load_prompts(path: str | Path | None = None) -> list[BenchItem]:
    """Over-refusal prompts at `path` (default: our packaged starter set)."""
    p = Path(path) if path else packaged(OVER_REFUSAL_STARTER)
    items = []
    for lineno, data in jsonl_objects(p):
        r: PromptRecord = _validate(PromptRecord, data, f"{p}:{lineno}")
        messages = r.messages or [Message(role="user", content=r.prompt or "")]
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        items.append(BenchItem(id=r.id, messages=messages,
                               language=r.language or detect_language(last_user),
                               category=r.category, level="R0"))
    return _unique(items, p)
