"""The fixed, group-aware split: every example of a group (an ask, its wrapped and hidden
variants, its translation) lands in the same split, chosen by a hash of the group."""

from __future__ import annotations

import hashlib

from oyster.assess.dataset.example import SEED, TEST_SHARE, VALID_SHARE, Example

CONVERSATION_VALID_SHARE = 0.4


def hash_share(group: str) -> float:
    return int(hashlib.sha256(f"{SEED}:{group}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split_of(group: str) -> str:
    h = hash_share(group)
    if h < TEST_SHARE:
        return "test"
    if h < TEST_SHARE + VALID_SHARE:
        return "valid"
    return "train"


def assign_splits(examples: list[Example]) -> None:
    """Set every example's split (in place)."""
    for ex in examples:
        group = ex.meta.get("ask_group", ex.group) if ex.source == "pyrit_jailbreak" else ex.group
        ex.split = split_of(group if ex.source != "pyrit_jailbreak" else ex.group)
        if ex.source.startswith("conversation:"):
            ex.split = ex.meta.get("split") or (
                "valid" if hash_share(ex.group) < CONVERSATION_VALID_SHARE else "train")
        if ex.source == "pyrit_jailbreak" and split_of(str(group)) == "test":
            ex.split = "test"  # never train on a wrapped version of a held-out ask
