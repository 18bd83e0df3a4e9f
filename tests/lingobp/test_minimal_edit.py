"""The minimal-edit rule: no proposal, and no sequence of proposals, changes a strategy set
by more than one item per round. Checked against an independent, exact definition of
"one edit" (insert, delete or replace one item; everything else identical and in order)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from oyster.lingobp.edit import apply_edit, normalise, plan_edit, same_item, similarity

PHRASES = [
    "decline in one or two sentences",
    "do not restate, summarise or partially fulfil the request",
    "offer one clearly safe alternative topic if it fits",
    "acknowledge feelings and stay with the person",
    "give no methods, amounts or instructions for the harmful part",
    "answer the question directly and completely",
    "point to the safe, standard way of doing it",
    "给出可以求助的热线电话",
]


def variants(phrase: str) -> st.SearchStrategy[str]:
    """Spellings of the same item: case, spacing and punctuation changes."""
    return st.sampled_from([phrase, phrase.upper(), f"  {phrase}. ", phrase.replace(",", ""),
                            phrase.capitalize() + "!"])


item = st.one_of(st.sampled_from(PHRASES).flatmap(variants),
                 st.text(min_size=0, max_size=40))
item_list = st.lists(item, max_size=7)


def is_one_edit(old: list[str], new: list[str]) -> bool:
    """Exactly: new == old, or old with one item inserted, deleted or replaced."""
    if new == old:
        return True
    if len(new) == len(old) + 1:
        return any(new[:i] + new[i + 1:] == old for i in range(len(new)))
    if len(new) == len(old) - 1:
        return any(old[:i] + old[i + 1:] == new for i in range(len(old)))
    if len(new) == len(old):
        return sum(a != b for a, b in zip(old, new, strict=True)) == 1
    return False


@settings(max_examples=100, deadline=None)
@given(old=item_list, proposal=item_list)
def test_no_proposal_changes_more_than_one_item(old: list[str], proposal: list[str]) -> None:
    new = apply_edit(old, proposal)
    assert is_one_edit(old, new)
    # nothing is invented: every item comes from the old set or from the proposal
    assert all(x in old or x.strip() in [p.strip() for p in proposal] for x in new)


@settings(max_examples=60, deadline=None)
@given(start=item_list, proposals=st.lists(item_list, min_size=1, max_size=6))
def test_no_sequence_of_proposals_changes_more_than_one_item_per_round(
        start: list[str], proposals: list[list[str]]) -> None:
    current = start
    for proposal in proposals:
        new = apply_edit(current, proposal)
        assert is_one_edit(current, new)
        current = new
    assert abs(len(current) - len(start)) <= len(proposals)


@settings(max_examples=60, deadline=None)
@given(old=st.lists(st.sampled_from(PHRASES), unique=True, max_size=6), data=st.data())
def test_rewording_and_reordering_is_not_a_change(old: list[str], data: st.DataObject) -> None:
    proposal = [data.draw(variants(p)) for p in data.draw(st.permutations(old))]
    edit = plan_edit(old, proposal)
    assert edit.kind == "none" and edit.items == old and edit.proposed_changes == 0


@settings(max_examples=60, deadline=None)
@given(old=st.lists(st.sampled_from(PHRASES[:6]), unique=True, min_size=1, max_size=5),
       data=st.data())
def test_a_single_edit_is_applied_as_proposed(old: list[str], data: st.DataObject) -> None:
    fresh = data.draw(st.sampled_from(PHRASES[6:]))
    kind = data.draw(st.sampled_from(["add", "remove", "replace"]))
    at = data.draw(st.integers(0, len(old) - (0 if kind == "add" else 1)))
    proposal = {"add": [*old[:at], fresh, *old[at:]],
                "remove": [*old[:at], *old[at + 1:]],
                "replace": [*old[:at], fresh, *old[at + 1:]]}[kind]
    edit = plan_edit(old, proposal)
    assert edit.items == proposal
    assert edit.kind == kind and not edit.clamped


def test_a_wholesale_rewrite_is_cut_to_one_replacement() -> None:
    old = ["do not restate, summarise or partially fulfil the request",
           "decline in one or two sentences"]
    proposal = ["decline in a few kind sentences and say why",
                "explain the risks", "offer a safe alternative", "add crisis resources"]
    edit = plan_edit(old, proposal)
    assert edit.kind == "replace" and edit.clamped and edit.proposed_changes == 4
    assert edit.items == [old[0], proposal[0]]  # the first new phrase, for the item most like it
    assert edit.proposal == proposal


def test_an_empty_proposal_removes_only_one_item() -> None:
    old = ["a first safety phrase", "a second different one", "a third unrelated item"]
    edit = plan_edit(old, [])
    assert edit.kind == "remove" and edit.items == old[1:] and edit.proposed_changes == 3


def test_duplicates_of_kept_items_are_not_additions() -> None:
    old = ["acknowledge feelings and stay with the person"]
    edit = plan_edit(old, [old[0], "Acknowledge feelings, and stay with the person!"])
    assert edit.kind == "none" and edit.items == old


def test_similarity_reads_normalised_text() -> None:
    assert normalise("  Decline, in ONE   sentence. ") == "decline in one sentence"
    assert similarity("Decline in one sentence.", "decline in one sentence") == 1.0
    assert same_item("give no methods or amounts", "Give no methods, or amounts!")
    assert not same_item("give no methods or amounts", "answer the question fully")
    assert similarity("explain the risks", "decline in one or two sentences") == \
        similarity("decline in one or two sentences", "explain the risks")
    assert same_item("给出求助热线", "给出求助热线。")
