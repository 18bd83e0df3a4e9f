"""The test-set guard: Strata-Sword's rows (evaluation only), and the removal of duplicates
and of every group that leaks a test-set text (`oyster.assess.leakage` finds the leaks)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from oyster.assess.dataset.example import Example
from oyster.assess.leakage import Leak, normalise


def strata_rows(shared: Path) -> list[tuple[str, int, str, str]]:
    """(prompt, level, attack method, language of the file: en/zh) per Strata-Sword row.
    Evaluation only; raises when the files are missing (never an empty list)."""
    import openpyxl

    root = shared / "data" / "strata_sword"
    files = sorted(root.glob("strata_sword_*_level_*.xlsx"))
    if not files:
        raise FileNotFoundError(f"{root}: no Strata-Sword files (../shared beside the "
                                "checkout, or $OYSTER_SHARED)")
    out: list[tuple[str, int, str, str]] = []
    for path in files:
        level = int(path.stem.rsplit("_", 1)[1])
        lang = "zh" if "_cn_" in path.name or "_zh_" in path.name else "en"
        sheet = openpyxl.load_workbook(path, read_only=True).worksheets[0]
        for row in list(sheet.iter_rows(values_only=True))[1:]:
            if row and row[0]:
                out.append((str(row[0]), level, str(row[1] or "None"), lang))
    return out


def unique(examples: list[Example], dropped: Counter[str]) -> list[Example]:
    """First example of every distinct normalised text."""
    seen: set[str] = set()
    out = []
    for ex in examples:
        key = normalise(ex.text)
        if not key or key in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(key)
        out.append(ex)
    return out


def without_leaks(examples: list[Example], leaked: dict[str, Leak],
                  dropped: Counter[str]) -> list[Example]:
    out = []
    for ex in examples:
        if ex.group in leaked or str(ex.meta.get("ask_group", "")) in leaked:
            dropped[f"leak:{ex.source}"] += 1
        else:
            out.append(ex)
    return out


def find_leaks(examples: list[Example], leaks: list[Leak | None],
               into: dict[str, Leak]) -> None:
    for ex, leak in zip(examples, leaks, strict=True):
        if leak is not None:
            into.setdefault(ex.group, leak)
