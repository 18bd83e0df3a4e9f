"""Benchmark datasets: the authors' Strata-Sword files, our starter sets, bad input."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from oyster.bench.datasets import load_constructive, load_prompts, load_strata_sword
from oyster.errors import InputError


def test_strata_sword_levels_languages_and_methods(shared_dir):
    items = load_strata_sword(shared_dir / "data" / "strata_sword")
    assert len(items) == 400 and len({i.id for i in items}) == 400
    cells = Counter((i.language, i.level) for i in items)
    assert cells == {("en", "1"): 100, ("en", "2"): 100, ("zh", "1"): 100, ("zh", "2"): 100}
    assert {i.attack_method for i in items if i.level == "1"} == {"none"}
    level2 = Counter(i.attack_method for i in items if i.level == "2" and i.language == "en")
    assert len(level2) == 6 and "none" not in level2
    assert all(i.messages[0].content.strip() for i in items)
    only = load_strata_sword(shared_dir / "data" / "strata_sword", {2}, {"zh"})
    assert {(i.language, i.level) for i in only} == {("zh", "2")}


def test_strata_sword_bad_directory(tmp_path):
    with pytest.raises(InputError, match="no strata_sword"):
        load_strata_sword(tmp_path)


def test_constructive_starter_set_covers_levels_categories_roles_languages(policy):
    items = load_constructive()
    assert len(items) >= 120
    assert Counter(i.level for i in items).keys() == {"R0", "R1", "R2"}
    assert min(Counter(i.level for i in items).values()) >= 30
    assert {i.language for i in items} == {"en", "zh"}
    assert sum(i.language == "zh" for i in items) >= 30
    categories = {i.category for i in items}
    assert len(categories) >= 20
    assert all(policy.has_category(c) for c in categories)
    assert len({i.user_role for i in items}) >= 30
    # interleaved, so `--limit N` takes a balanced slice
    assert {i.level for i in items[:6]} == {"R0", "R1", "R2"}


def test_over_refusal_starter_set_is_benign_and_bilingual():
    items = load_prompts()
    assert len(items) >= 30 and {i.language for i in items} == {"en", "zh"}
    assert {i.level for i in items} == {"R0"}


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "malformed JSON"),
    (json.dumps({"id": "a", "query": "q", "level": "R9", "category": "x"}), "level"),
    (json.dumps({"id": "a", "level": "R1", "category": "x"}), "exactly one of"),
    (json.dumps({"id": "a", "query": "q", "level": "R1", "category": "x", "colour": 1}), "colour"),
])
def test_bad_constructive_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps({"id": "ok", "query": "hi", "level": "R0", "category": "none"})
                    + "\n" + line + "\n", "utf-8")
    with pytest.raises(InputError, match=message) as err:
        load_constructive(path)
    assert f"{path}:2" in str(err.value)


def test_duplicate_ids_are_rejected(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "x", "prompt": "a"}\n{"id": "x", "prompt": "b"}\n', "utf-8")
    with pytest.raises(InputError, match="duplicate id"):
        load_prompts(path)
