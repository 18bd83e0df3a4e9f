"""The held-out test sets in `oyster/bench/data/testsets/` are well formed and as large as their README says.

These sets are reported, never used for a choice; this test only checks their shape, so it reads them as
plain JSON and never hands their text to anything that learns or tunes.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
import urllib.parse
from collections import Counter, defaultdict
from importlib import resources
from typing import Any

import pytest

STRATEGIES = {"answer", "answer_safely", "correct", "guide", "refuse"}
LANGUAGES = {"en", "zh"}
DECLINE = ["refuse", "guide"]
HELP = ["answer", "answer_safely"]
CJK = re.compile(r"[\u3400-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")

TESTSETS = resources.files("oyster.bench") / "data" / "testsets"
FILES = ("false_beliefs", "multiturn_intent", "novel_attacks", "heldout_asks", "benign_risky",
         "privacy_third_party", "surface_forms", "reference_replies", "long_messages")
# Fields every line of a set carries, beyond id/language/expected/note.
REQUIRED = {
    "false_beliefs": {"prompt", "harm_to", "kind"},
    "multiturn_intent": {"messages", "direction", "kind"},
    "novel_attacks": {"prompt", "family", "harmful"},
    "heldout_asks": {"prompt", "harmful", "category"},
    "benign_risky": {"prompt", "kind"},
    "privacy_third_party": {"prompt", "harmful", "kind"},
    "surface_forms": {"prompt", "family", "variant", "harmful"},
    "reference_replies": {"messages", "strategy", "reply", "crisis"},
    "long_messages": {"prompt", "harmful", "kind"},
}
NOVEL_FAMILIES = {"char_doubling", "acrostic", "riddle", "story_payload", "code_assembly", "reversed",
                  "leetspeak_homoglyph", "encoding", "translation_pivot", "fake_system", "fill_blanks"}
ZH_ONLY_FAMILIES = {"char_split"}


def load(name: str) -> list[dict[str, Any]]:
    rows = []
    text = (TESTSETS / f"{name}.jsonl").read_text("utf-8")
    for n, line in enumerate(text.splitlines(), 1):
        assert line.strip(), f"{name}.jsonl:{n}: blank line"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            pytest.fail(f"{name}.jsonl:{n}: malformed JSON: {e}")
        assert isinstance(row, dict), f"{name}.jsonl:{n}: not an object"
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def sets() -> dict[str, list[dict[str, Any]]]:
    return {name: load(name) for name in FILES}


def ask_text(row: dict[str, Any]) -> str:
    """The text a decision is made on: the prompt, or the last user turn."""
    if "prompt" in row:
        return str(row["prompt"])
    return str(row["messages"][-1]["content"])


def conversation_text(row: dict[str, Any]) -> str:
    if "prompt" in row:
        return str(row["prompt"])
    return " ".join(m["content"] for m in row["messages"])


def counts(rows: list[dict[str, Any]], *keys: str) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(r[k] for k in keys) for r in rows)


def test_the_readme_and_every_set_are_present():
    names = {p.name for p in TESTSETS.iterdir()}
    assert "README.md" in names
    assert {f"{n}.jsonl" for n in FILES} <= names


@pytest.mark.parametrize("name", FILES)
def test_lines_carry_their_fields_and_known_values(sets, name):
    for row in sets[name]:
        where = f"{name}:{row.get('id')}"
        missing = ({"id", "language", "expected", "note"} | REQUIRED[name]) - row.keys()
        assert not missing, f"{where}: missing {sorted(missing)}"
        assert row["language"] in LANGUAGES, where
        assert row["expected"] and set(row["expected"]) <= STRATEGIES, where
        assert len(set(row["expected"])) == len(row["expected"]), where
        assert str(row["note"]).strip(), where
        if "prompt" in row:
            assert isinstance(row["prompt"], str) and row["prompt"].strip(), where
        if "harmful" in row:
            assert row["expected"] == (DECLINE if row["harmful"] else HELP), where


@pytest.mark.parametrize("name", FILES)
def test_ids_are_unique_and_say_their_set_and_language(sets, name):
    ids = [r["id"] for r in sets[name]]
    assert len(ids) == len(set(ids)), [i for i, c in Counter(ids).items() if c > 1]
    if name != "surface_forms":  # a surface family mixes languages under one id stem
        assert all(f"-{r['language']}-" in r["id"] for r in sets[name])


@pytest.mark.parametrize("name", FILES)
def test_language_labels_match_the_text(sets, name):
    for row in sets[name]:
        text = conversation_text(row) + (row.get("reply") or "") + (row.get("hidden") or "")
        if row["language"] == "zh" and row.get("family") != "leetspeak_homoglyph":
            assert CJK.search(text), f"{row['id']}: labelled zh, no Chinese characters"
        if row["language"] == "en":
            assert len(LATIN.findall(text)) > len(CJK.findall(text)), f"{row['id']}: labelled en"


def test_no_ask_appears_twice_within_or_across_sets(sets):
    seen: dict[str, str] = {}
    for rows in sets.values():
        for row in rows:
            key = " ".join(ask_text(row).casefold().split())
            assert key not in seen, f"{row['id']} repeats {seen[key]}"
            seen[key] = row["id"]


def test_no_ask_copies_a_starter_set(sets):
    starters = resources.files("oyster.bench") / "data"
    starter_text = set()
    for fname in ("constructive_starter.jsonl", "over_refusal_starter.jsonl"):
        for line in (starters / fname).read_text("utf-8").splitlines():
            item = json.loads(line)
            starter_text.add(" ".join(str(item.get("query") or item.get("prompt")).casefold().split()))
    copies = [r["id"] for rows in sets.values() for r in rows
              if " ".join(ask_text(r).casefold().split()) in starter_text]
    assert not copies


def test_false_beliefs(sets):
    rows = sets["false_beliefs"]
    assert len(rows) >= 100
    assert min(counts(rows, "language").values()) >= 50 and len(counts(rows, "language")) == 2
    assert {r["harm_to"] for r in rows} == {"self", "child", "dependant", "other"}
    assert all(r["expected"] == ["correct", "guide"] for r in rows)
    assert len({r["kind"] for r in rows}) >= 8


def test_multiturn_conversations(sets):
    rows = sets["multiturn_intent"]
    cells = counts(rows, "language", "direction")
    assert set(cells) == {(lang, d) for lang in LANGUAGES for d in ("harmful", "benign")}
    assert min(cells.values()) >= 30
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert len(roles) >= 3 and len(roles) % 2 == 1, row["id"]
        assert roles == ["user" if i % 2 == 0 else "assistant" for i in range(len(roles))], row["id"]
        assert all(m["content"].strip() for m in row["messages"]), row["id"]
        assert row["expected"] == (DECLINE if row["direction"] == "harmful" else HELP), row["id"]


def test_novel_attack_families_each_harmful_item_has_a_harmless_twin(sets):
    rows = sets["novel_attacks"]
    cells = counts(rows, "language", "family", "harmful")
    expected_cells = ({(lang, f) for lang in LANGUAGES for f in NOVEL_FAMILIES}
                      | {("zh", f) for f in ZH_ONLY_FAMILIES})
    assert {(lang, f) for lang, f, _ in cells} == expected_cells
    assert all(cells[(lang, f, h)] >= 10 for lang, f in expected_cells for h in (True, False))
    by_id = {r["id"]: r for r in rows}
    twins = defaultdict(list)
    for row in rows:
        if not row["harmful"]:
            original = by_id[row["twin_of"]]
            assert original["harmful"], row["id"]
            assert (original["family"], original["language"]) == (row["family"], row["language"]), row["id"]
            twins[original["id"]].append(row["id"])
    assert all(twins[r["id"]] for r in rows if r["harmful"])


DECODERS = {
    "base64": lambda s: base64.b64decode(s).decode(),
    "hex": lambda s: binascii.unhexlify(s.removeprefix("0x").replace(" ", "")).decode(),
    "rot13": lambda s: codecs.decode(s, "rot13"),
    "url": urllib.parse.unquote,
    "unicode_escape": lambda s: s.encode().decode("unicode_escape"),
}
ENCODED = {
    "base64": re.compile(r"[A-Za-z0-9+/]{16,}={0,2}"),
    "hex": re.compile(r"(?:0x)?(?:[0-9a-f]{2} ?){8,}"),
    "rot13": re.compile(r"[A-Za-z' ]{20,}"),
    "url": re.compile(r"(?:%[0-9A-F]{2}|[A-Za-z0-9])+(?:%[0-9A-F]{2})+"),
    "unicode_escape": re.compile(r"(?:\\u[0-9a-f]{4})+"),
}


def test_encoded_and_reversed_items_hide_what_they_say_they_hide(sets):
    checked = 0
    for row in sets["novel_attacks"]:
        if row["family"] == "encoding":
            scheme = row["scheme"]
            decoded = []
            for m in ENCODED[scheme].finditer(row["prompt"]):
                try:
                    decoded.append(DECODERS[scheme](m.group(0).strip()))
                except (ValueError, UnicodeDecodeError):
                    continue
            assert row["hidden"] in decoded, row["id"]
            checked += 1
        elif row["family"] == "reversed":
            flipped = {row["prompt"][::-1], " ".join(row["prompt"].split()[::-1])}
            assert any(row["hidden"] in f for f in flipped), row["id"]
            checked += 1
    assert checked >= 80


def test_heldout_asks_are_short_and_balanced(sets):
    rows = sets["heldout_asks"]
    cells = counts(rows, "language", "harmful")
    assert set(cells) == {(lang, h) for lang in LANGUAGES for h in (True, False)}
    assert min(cells.values()) >= 80
    assert all(len(r["prompt"]) <= 200 for r in rows)
    for harmful in (True, False):
        assert len({r["category"] for r in rows if r["harmful"] is harmful}) >= 15


def test_benign_risky(sets):
    rows = sets["benign_risky"]
    assert min(counts(rows, "language").values()) >= 60 and len(counts(rows, "language")) == 2
    assert all(r["expected"] == HELP for r in rows)
    assert len({r["kind"] for r in rows}) >= 10


def test_privacy_third_party(sets):
    cells = counts(sets["privacy_third_party"], "language", "harmful")
    assert all(cells[(lang, True)] >= 20 and cells[(lang, False)] >= 10 for lang in LANGUAGES)


def test_long_messages_are_long_and_every_harmless_one_has_a_harmful_twin(sets):
    rows = sets["long_messages"]
    cells = counts(rows, "language", "harmful")
    assert all(cells[(lang, h)] >= 20 for lang in LANGUAGES for h in (True, False))
    assert all(len(r["prompt"]) >= 800 for r in rows)
    harmless = {r["id"]: r for r in rows if not r["harmful"]}
    twins = [r for r in rows if r["harmful"]]
    assert sorted(r["twin_of"] for r in twins) == sorted(harmless)
    for t in twins:
        original = harmless[t["twin_of"]]
        assert t["kind"] == original["kind"] and t["language"] == original["language"], t["id"]
        assert t["prompt"] != original["prompt"], t["id"]


def test_surface_form_families_are_consistent(sets):
    families = defaultdict(list)
    for row in sets["surface_forms"]:
        families[row["family"]].append(row)
    assert len(families) >= 15
    assert {rows[0]["harmful"] for rows in families.values()} == {True, False}
    for fam, rows in families.items():
        assert len(rows) >= 4, fam
        assert len({r["harmful"] for r in rows}) == 1, fam
        assert {r["language"] for r in rows} == LANGUAGES, fam
        assert len({r["variant"] for r in rows}) >= 3, fam


# Signs of a reply that speaks about the conversation instead of to the person (issue #14).
THIRD_PERSON = re.compile(r"\bthe user\b|\bthe assistant\b|as instructed|listed above|用户|助手", re.I)


def test_reference_replies_cover_every_strategy_and_speak_to_the_person(sets):
    rows = sets["reference_replies"]
    cells = counts(rows, "language", "strategy")
    assert all(cells[(lang, s)] >= 8 for lang in LANGUAGES for s in STRATEGIES)
    for row in rows:
        assert row["strategy"] in STRATEGIES and row["expected"] == [row["strategy"]], row["id"]
        assert row["messages"][-1]["role"] == "user", row["id"]
        assert len(row["reply"].strip()) >= 20, row["id"]
        assert not THIRD_PERSON.search(row["reply"]), row["id"]
    # some short replies, some with markdown lists
    assert any(len(r["reply"]) < 250 for r in rows) and any("\n- " in r["reply"] for r in rows)
    # replies to people in crisis carry a real line for their locale
    assert sum(r["crisis"] for r in rows) >= 16
    for row in rows:
        if row["crisis"]:
            lines = ("988", "1-800-") if row["language"] == "en" else (
                "010-82951332", "400-161-9995", "12356", "1925", "12338", "110")
            assert any(line in row["reply"] for line in lines), row["id"]
