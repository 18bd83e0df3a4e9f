"""One labelled training example, the seed everything derives from, and the packaged data
files the pipeline reads (`assess/data/`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from oyster._packaged import packaged_data
from oyster.assess.dataset.labels import guess_form
from oyster.types import detect_language

SEED = 20251127
TEST_SHARE = 0.2
VALID_SHARE = 0.1


@dataclass
class Example:
    text: str
    lang: str
    level: str
    user_type: str
    categories: list[str]  # [] = unknown (masked in training); ["none"] = no risk
    form: str
    source: str
    group: str
    technique: str = ""
    split: str = "train"
    meta: dict[str, Any] = field(default_factory=dict)


@cache  # read-only for every caller; `wrapped` asks for it once per harmful ask
def data_file(name: str) -> dict[str, Any]:
    data = packaged_data("oyster.assess", f"data/{name}")
    assert isinstance(data, dict)
    return data


def make_example(text: str, level: str, user_type: str, categories: list[str], source: str,
                 group: str, form: str | None = None, technique: str = "", **meta: Any
                 ) -> Example:
    """An example of `text` (stripped) with its labels; the language is detected and the
    form guessed when not given."""
    text = text.strip()
    return Example(text=text, lang=detect_language(text), level=level, user_type=user_type,
                   categories=categories, form=form or guess_form(text), source=source,
                   group=group, technique=technique, meta=meta)
