"""Lingo-BP input files, and our own training-query seed file: its coverage, and that it
shares nothing with the test sets (Strata-Sword, the starter sets, the held-out sets),
checked with the leakage guard that training data passes."""

from __future__ import annotations

import itertools
import json
import re
from importlib import resources
from pathlib import Path

import pytest

from oyster.errors import InputError
from oyster.lingobp import load_queries
from oyster.lingobp.edit import normalise

SEEDS = Path(str(resources.files("oyster.lingobp").joinpath("data/seed_queries.jsonl")))


def write(tmp_path: Path, *lines: object) -> Path:
    p = tmp_path / "q.jsonl"
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
                 "utf-8")
    return p


def test_both_case_formats_and_the_benchmark_format_load(tmp_path: Path) -> None:
    p = write(tmp_path,
              {"id": "a", "prompt": "How do I kill a stuck process?"},
              {"id": 7, "messages": [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "我睡不着"}]},
              "",
              {"id": "c", "query": "Is bleach safe to drink?", "level": "R1",
               "category": "healthcare", "user_role": "parent", "user_profile": "misinformed",
               "reference_replies": ["ignored"]},
              {"prompt": "no id here"})
    a, b, c, d = load_queries(p)
    assert (a.id, a.messages[0].content, a.language) == ("a", "How do I kill a stuck process?", "en")
    assert (b.id, [m.role for m in b.messages], b.language) == ("7", ["system", "user"], "zh")
    assert (c.level, c.category, c.user_role, c.user_profile) == \
        ("R1", "healthcare", "parent", "misinformed")
    assert d.id == "line-5"


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "q.jsonl:1: malformed JSON"),
    ({"id": "x", "prompt": "a", "messages": [{"role": "user", "content": "b"}]},
     "exactly one of 'prompt', 'query' or 'messages'"),
    ({"id": "x"}, "exactly one of"),
    ({"id": "x", "messages": [{"role": "user", "content": "hi"},
                              {"role": "assistant", "content": "hello"}]},
     "must end with a user message"),
    ({"id": "x", "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"id": "x", "prompt": "hi", "level": "R9"}, "field 'level'"),
    ([1, 2], "must be a JSON object"),
])
def test_bad_lines_name_the_file_and_line(tmp_path: Path, line: object, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        load_queries(write(tmp_path, line))


def test_duplicate_ids_and_empty_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"q\.jsonl:2: duplicate id 'a'"):
        load_queries(write(tmp_path, {"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}))
    with pytest.raises(InputError, match="no queries"):
        load_queries(write(tmp_path, ""))


def test_the_seed_queries_cover_levels_types_and_languages(policy: object) -> None:
    seeds = load_queries(SEEDS)
    assert len(seeds) >= 40
    assert {q.level for q in seeds} == {"R0", "R1", "R2"}
    assert {q.user_profile for q in seeds} == {"benign", "vulnerable", "misinformed", "malicious"}
    assert {q.language for q in seeds} == {"en", "zh"}
    first20 = seeds[:20]  # the demo runs the first 20: they must be mixed too
    assert {q.level for q in first20} == {"R0", "R1", "R2"}
    assert {q.language for q in first20} == {"en", "zh"}
    assert all(q.category is None or policy.has_category(q.category) for q in seeds)  # type: ignore[attr-defined]
    assert len({q.category for q in seeds if q.category}) >= 12


def trigrams(text: str) -> set[str]:
    return {text[i:i + 3] for i in range(len(text) - 2)}


def seed_turns() -> list[tuple[str, str, str]]:
    """(id, language, text) of every user turn of the seed queries."""
    return [(q.id, q.language, m.content) for q in load_queries(SEEDS) for m in q.messages
            if m.role == "user"]


def test_the_seed_queries_share_no_wording_with_any_test_set(shared_dir: Path) -> None:
    """The leakage guard training data must pass (`oyster.assess.leakage.NgramGuard`:
    containment either way, shingle Jaccard >= 0.6) finds no seed turn in any test set:
    Strata-Sword, the starter sets and the held-out sets. A failure names the seed and the
    set, never the text."""
    from oyster.assess.leakage import NgramGuard, protected_texts

    protected = protected_texts(shared_dir)
    assert len(protected) >= 2000
    assert {p.source.split(":")[0] + ":" + p.source.split(":")[1] for p in protected} >= {
        "strata_sword:en", "strata_sword:zh", "starter:constructive", "starter:over_refusal",
        "testsets:false_beliefs", "testsets:novel_attacks", "testsets:heldout_asks"}
    turns = seed_turns()
    leaks = NgramGuard(protected).leaks([text for _, _, text in turns])
    assert [(seed_id, leak.protected.source, leak.measure)
            for (seed_id, _, _), leak in zip(turns, leaks, strict=True) if leak] == []


def test_the_seed_queries_do_not_repeat_each_other() -> None:
    turns = [(i, normalise(t)) for i, _, t in seed_turns()]
    for (a, ta), (b, tb) in itertools.combinations(turns, 2):
        ga, gb = trigrams(ta), trigrams(tb)
        if min(len(ga), len(gb)) >= 0.5 * max(len(ga), len(gb)):  # else Jaccard < 0.5
            assert len(ga & gb) / max(1, len(ga | gb)) < 0.5, (a, b)
