"""The writer and reader of a built dataset: `examples.jsonl` plus `provenance.json`
(counts per source, label and split)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from oyster._jsonl import jsonl_objects
from oyster.assess.dataset.example import Example


def counts(examples: list[Example]) -> dict[str, Any]:
    def tally(key: Callable[[Example], str]) -> dict[str, int]:
        return dict(sorted(Counter(key(e) for e in examples).items()))

    return {
        "total": len(examples),
        "by_source": tally(lambda e: e.source),
        "by_split": tally(lambda e: e.split),
        "by_lang": tally(lambda e: e.lang),
        "by_level": tally(lambda e: e.level),
        "by_user_type": tally(lambda e: e.user_type),
        "by_form": tally(lambda e: e.form),
        "by_technique": tally(lambda e: e.technique or "-"),
        "by_category": dict(sorted(Counter(c for e in examples for c in e.categories).items())),
    }


def write(examples: list[Example], out_dir: Path, provenance: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "examples.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(asdict(ex), ensure_ascii=False) + "\n")
    (out_dir / "provenance.json").write_text(
        json.dumps(provenance, indent=2, ensure_ascii=False), "utf-8")
    return path


def load_jsonl(path: Path) -> list[Example]:
    return [Example(**data) for _, data in jsonl_objects(path)]
