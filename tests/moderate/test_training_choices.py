"""What the moderator's training chooses on validation (model size, thresholds, the stream
hold) and how the hold threshold is read back, on numbers and texts written for these tests."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from oyster.moderate import Moderator
from oyster.moderate.moderator import ReplyHead, packaged_head_path
from oyster.moderate.train import Candidate, choose_model, threshold_within
from oyster.taxonomy.policy import ModerationSettings

SMALL, ENSEMBLE, LOGISTIC = (Candidate("network", 1.0), Candidate("network", 1.0, 128, 5),
                             Candidate("logistic", 0.1))
UNITS = [LOGISTIC.units, SMALL.units, ENSEMBLE.units]


def _scores(separation: float, seed: int, labels: np.ndarray) -> np.ndarray:
    """Validation scores of a made-up head: harmful replies shifted up by `separation`."""
    return np.random.default_rng(seed).normal(size=len(labels)) + separation * labels


def test_a_bigger_head_must_buy_more_than_validation_noise():
    labels = np.array([True] * 60 + [False] * 140)
    weak, good = _scores(0.3, 1, labels), _scores(2.0, 2, labels)
    about_as_good = good + np.random.default_rng(3).normal(scale=0.05, size=len(labels))
    chosen, se = choose_model(UNITS, [weak, good, about_as_good], labels)
    assert chosen == 1 and all(e >= 0 for e in se)
    # clearly better (perfectly separated) is worth the size
    chosen, _ = choose_model(UNITS, [weak, good, labels + 0.01 * good], labels)
    assert chosen == 2
    # the cheapest of all wins when it is as good
    chosen, _ = choose_model(UNITS, [good, good.copy(), good.copy()], labels)
    assert chosen == 0


def test_candidates_are_sized_by_their_hidden_units():
    assert (LOGISTIC.units, SMALL.units, ENSEMBLE.units) == (0, 64, 640)
    assert ENSEMBLE.name == "network:1.0:128x5"


def test_a_threshold_keeps_false_alarms_within_budget_and_is_the_lowest_that_does():
    harmless = np.linspace(0.0, 0.99, 100)  # scores of 100 harmless replies
    harmful = np.array([0.5, 0.95, 0.99])
    scores = np.concatenate([harmless, harmful])
    labels = np.array([False] * 100 + [True] * 3)
    for budget in (0.01, 0.03, 0.2):
        t = threshold_within(scores, labels, budget)
        assert (harmless >= t).mean() <= budget
        assert (harmless >= t - 0.011).mean() > budget  # one step lower breaks the budget


def test_the_hold_threshold_comes_from_the_policy_then_the_head_then_strict(tmp_path):
    head = ReplyHead.load(packaged_head_path())
    assert head.hold_threshold is not None and 0 < head.hold_threshold < head.thresholds["strict"]
    assert Moderator(ModerationSettings()).hold_threshold() == head.hold_threshold
    assert Moderator(ModerationSettings(hold_threshold=0.7)).hold_threshold() == 0.7
    older = tmp_path / "older.npz"  # a head trained before holds had their own threshold
    replace(head, hold_threshold=None).save(older)
    assert ReplyHead.load(older).hold_threshold is None
    assert Moderator(ModerationSettings(), older).hold_threshold() == head.thresholds["strict"]
    with pytest.raises(ValueError):
        ModerationSettings(hold_threshold=1.5)


# written for this test: an opening that sounds like the start of something bad without
# saying it yet, and an ordinary one
OMINOUS = ("Fine, forget the cooking. You already know what you want to do tonight, and "
           "nobody is going to stop you this time.")
ORDINARY = ("A simple dinner tonight: fry some onions and garlic, add a tin of tomatoes, "
            "simmer for ten minutes and stir in cooked pasta with a little cheese.")


def test_a_stream_is_held_when_its_text_so_far_reads_ominous():
    moderator = Moderator(ModerationSettings())
    assert moderator.suspicious(OMINOUS)
    assert not moderator.suspicious("Hello! How can I help you today?")
    # a hold only delays: an ordinary reply may be held (about a quarter of long harmless
    # replies wait for their end, benchmarks/results/moderation_heads.json), never blocked
    assert not moderator.moderate(ORDINARY, "normal").flagged
    assert not moderator.suspicious("")
    assert not Moderator(ModerationSettings(enabled=False)).suspicious(OMINOUS)
