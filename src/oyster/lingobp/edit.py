"""The minimal-edit rule, enforced in code: one strategy set changes by at most one item
per round (one added, one removed, or one replaced).

An editor, rule-based or LLM, proposes a whole new list; `plan_edit` compares it with the
old list and keeps at most one change. Two phrases are the same item when their normalised
texts are similar enough (`SAME_ITEM_SIMILARITY`), so rewording, reordering or re-casing
an item is not a change; items the proposal keeps stay in their old wording and order.
When a proposal asks for more than one change, one is kept, in this order of preference:
a replacement (the proposal's first new phrase, in place of the dropped item most like it),
an addition (the first new phrase), a removal (the first dropped item).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Normalised-text similarity at or above which two phrases count as the same item.
SAME_ITEM_SIMILARITY = 0.8

ChangeKind = Literal["none", "add", "remove", "replace"]

_NOT_WORD = re.compile(r"[^\w]+")


def normalise(text: str) -> str:
    """Case-, width- and punctuation-insensitive form of a phrase."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NOT_WORD.sub(" ", folded).split())


def similarity(a: str, b: str) -> float:
    """How alike two phrases are, in [0, 1], on their normalised texts (symmetric)."""
    na, nb = sorted((normalise(a), normalise(b)))  # the ratio depends on argument order
    if na == nb:
        return 1.0
    return SequenceMatcher(None, na, nb, autojunk=False).ratio()


def same_item(a: str, b: str, threshold: float = SAME_ITEM_SIMILARITY) -> bool:
    return similarity(a, b) >= threshold


class SetEdit(BaseModel):
    """What the edit step did to one strategy set."""

    model_config = ConfigDict(frozen=True)

    items: list[str] = Field(description="the set after the edit")
    proposal: list[str] = Field(default_factory=list, description="what the editor proposed")
    kind: ChangeKind
    removed: str | None = None
    added: str | None = None
    proposed_changes: int = Field(ge=0, description="changes the proposal asked for")

    @property
    def clamped(self) -> bool:
        """Whether the proposal asked for more than the one change that was kept."""
        return self.proposed_changes > 1


def _match(old: Sequence[str], proposal: Sequence[str], threshold: float
           ) -> dict[int, int]:
    """One-to-one pairs (proposal index -> old index) of the same item, most alike first."""
    pairs = sorted(((similarity(o, p), i, j) for i, o in enumerate(old)
                    for j, p in enumerate(proposal)), key=lambda t: (-t[0], t[1], t[2]))
    matched: dict[int, int] = {}
    used_old: set[int] = set()
    for score, i, j in pairs:
        if score < threshold:
            break
        if i not in used_old and j not in matched:
            matched[j] = i
            used_old.add(i)
    return matched


def plan_edit(old: Sequence[str], proposal: Sequence[str],
              threshold: float = SAME_ITEM_SIMILARITY) -> SetEdit:
    """The old set changed by at most one item toward `proposal` (see the module docstring).

    Empty phrases in the proposal are ignored; a proposed phrase that is the same item as
    one already in the set (or earlier in the proposal) is a duplicate, not an addition.
    """
    old = list(old)
    proposal = [p.strip() for p in proposal if p.strip()]
    matched = _match(old, proposal, threshold)
    added: list[int] = []
    for j, p in enumerate(proposal):
        if j in matched:
            continue
        if any(same_item(p, o, threshold) for o in old) or \
                any(same_item(p, proposal[k], threshold) for k in added):
            continue
        added.append(j)
    removed = [i for i in range(len(old)) if i not in matched.values()]
    proposed = max(len(added), len(removed))
    if removed and added:
        j = added[0]
        i = max(removed, key=lambda i: (similarity(old[i], proposal[j]), -i))
        items = [*old[:i], proposal[j], *old[i + 1:]]
        return SetEdit(items=items, kind="replace", removed=old[i], added=proposal[j],
                       proposal=proposal, proposed_changes=proposed)
    if added:
        j = added[0]
        before = [matched[k] for k in range(j) if k in matched]
        at = max(before) + 1 if before else 0
        return SetEdit(items=[*old[:at], proposal[j], *old[at:]], kind="add",
                       added=proposal[j], proposal=proposal, proposed_changes=proposed)
    if removed:
        i = removed[0]
        return SetEdit(items=[*old[:i], *old[i + 1:]], kind="remove", removed=old[i],
                       proposal=proposal, proposed_changes=proposed)
    return SetEdit(items=old, kind="none", proposal=proposal, proposed_changes=0)


def apply_edit(old: Sequence[str], proposal: Sequence[str],
               threshold: float = SAME_ITEM_SIMILARITY) -> list[str]:
    """`old` changed by at most one item (added, removed or replaced) toward `proposal`."""
    return plan_edit(old, proposal, threshold).items
