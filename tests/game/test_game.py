"""Properties of the game, checked over many posteriors, severities, levels and weights."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oyster.game import (
    TypeEvidence,
    choose_strategy,
    expected_utilities,
    leader_values,
    posterior_over_types,
    reaction_probabilities,
)
from oyster.taxonomy.policy import policy_from_mapping
from oyster.types import LEVELS, REACTIONS, STRATEGIES, USER_TYPES

posteriors = st.lists(st.floats(0.001, 1.0), min_size=4, max_size=4).map(
    lambda w: {t: x / sum(w) for t, x in zip(USER_TYPES, w, strict=True)})
severities = st.floats(0.0, 1.0)
levels = st.sampled_from(LEVELS)


def _with(policy, **game):
    data = policy.model_dump(mode="json")
    data["game"].update(game)
    return policy_from_mapping(data, "test")


def test_reaction_probabilities_are_distributions(policy):
    for t in USER_TYPES:
        for a in STRATEGIES:
            probs = reaction_probabilities(policy.game, policy.strategies, t, a)
            assert set(probs) == set(REACTIONS)
            assert math.isclose(sum(probs.values()), 1.0) and min(probs.values()) > 0


def test_anticipated_reactions_make_sense(policy):
    def p(t, a, r):
        return reaction_probabilities(policy.game, policy.strategies, t, a)[r]

    # a refused attacker tries again more than an answered one; a guided vulnerable
    # person follows the guidance more than a refused one
    assert p("malicious", "refuse", "retries") > p("malicious", "answer", "retries")
    assert p("vulnerable", "guide", "follows_guidance") > p("vulnerable", "refuse", "follows_guidance")
    assert p("vulnerable", "refuse", "leaves_for_unsafe_source") > p("vulnerable", "guide",
                                                                     "leaves_for_unsafe_source")


@settings(max_examples=300, deadline=None)
@given(post=posteriors, severity=severities, level=levels,
       steps=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6))
def test_moving_toward_malicious_never_makes_answer_more_attractive(policy, post, severity,
                                                                    level, steps):
    g, s = policy.game, policy.strategies
    first = choose_strategy(g, s, post, severity, level)
    prev_u = first.utilities["answer"]
    for t in sorted(steps):
        moved = {k: (1 - t) * v + (t if k == "malicious" else 0.0) for k, v in post.items()}
        choice = choose_strategy(g, s, moved, severity, level)
        assert choice.utilities["answer"] <= prev_u + 1e-9
        if first.strategy != "answer":
            assert choice.strategy != "answer"
        prev_u = choice.utilities["answer"]


@settings(max_examples=200, deadline=None)
@given(post=posteriors, severity=severities, level=levels,
       betas=st.lists(st.floats(0.0, 20.0), min_size=2, max_size=6))
def test_raising_beta_never_makes_a_riskier_strategy_win(policy, post, severity, level, betas):
    harms = []
    for beta in sorted(betas):
        p = _with(policy, beta=beta)
        choice = choose_strategy(p.game, p.strategies, post, severity, level)
        harms.append(choice.expected_harm[choice.strategy])
    assert all(b <= a + 1e-4 for a, b in itertools.pairwise(harms)), harms


@settings(max_examples=150, deadline=None)
@given(post=posteriors, level=levels, sev=st.lists(severities, min_size=2, max_size=2))
def test_more_severe_category_never_lowers_harm_weight(policy, post, level, sev):
    lo, hi = sorted(sev)
    u_lo = expected_utilities(policy.game, policy.strategies, post, lo, level)
    u_hi = expected_utilities(policy.game, policy.strategies, post, hi, level)
    # utilities only fall as severity rises (harm is non-negative)
    assert all(u_hi[a] <= u_lo[a] + 1e-9 for a in STRATEGIES)


def _one(reaction):
    return {r: (1.0 if r == reaction else 0.0) for r in REACTIONS}


def test_utilities_match_numbers_worked_by_hand(policy):
    """A game small enough to solve on paper: every reaction certain, two user types with
    weight, harm only from what a malicious user takes away or does next.

    benign: satisfied by every strategy (retention 1, no harm), so V = 1 - 0.5·cost.
    malicious: answer → satisfied, refuse → escalates, the others → retries.
    scale = severity 0.8 × level_scale[R2] 1.0; V = α·retention - β·scale·(exposure·misuse +
    reaction harm) - γ·cost with α 1, β 2, γ 0.5:
      answer         1.0 - 1.6·(1.0 + 0)   - 0     = -0.60
      answer_safely  0.5 - 1.6·(0.5 + 0)   - 0.05  = -0.35   (correct: the same)
      guide          0.5 - 1.6·(0.2 + 0)   - 0.10  = +0.08
      refuse         0.0 - 1.6·(0.0 + 0.2) - 0     = -0.32
    U = 0.75·V(benign) + 0.25·V(malicious):
      answer 0.75·1.00 - 0.15 = 0.600; answer_safely, correct 0.75·0.95 - 0.0875 = 0.625;
      guide 0.75·0.90 + 0.02 = 0.695; refuse 0.75·1.00 - 0.08 = 0.670 → guide.
    """
    data = policy.model_dump(mode="json")
    zero = dict.fromkeys(REACTIONS, 0.0)
    for a, (exposure, cost) in {"answer": (1.0, 0.0), "answer_safely": (0.5, 0.1),
                                "correct": (0.5, 0.1), "guide": (0.2, 0.2),
                                "refuse": (0.0, 0.0)}.items():
        data["strategies"][a].update(exposure=exposure, cost=cost)
    malicious = {"answer": "satisfied", "refuse": "escalates"}
    data["game"].update(
        alpha=1.0, beta=2.0, gamma=0.5, level_scale={"R0": 0.0, "R1": 0.5, "R2": 1.0},
        misuse={"benign": 0.0, "vulnerable": 0.0, "misinformed": 0.0, "malicious": 1.0},
        retention={t: {**zero, "satisfied": 1.0, "retries": 0.5} for t in USER_TYPES},
        reaction_harm={t: {**zero, "escalates": 0.2 if t == "malicious" else 0.0}
                       for t in USER_TYPES},
        behaviour={**data["game"]["behaviour"], "kind": "table", "table": {
            t: {a: _one(malicious.get(a, "retries") if t == "malicious" else "satisfied")
                for a in STRATEGIES} for t in USER_TYPES}})
    p = policy_from_mapping(data, "test")
    post = {"benign": 0.75, "vulnerable": 0.0, "misinformed": 0.0, "malicious": 0.25}
    values = leader_values(p.game, p.strategies, 0.8, "R2")
    assert values["malicious"] == pytest.approx(
        {"answer": -0.6, "answer_safely": -0.35, "correct": -0.35, "guide": 0.08,
         "refuse": -0.32})
    u = expected_utilities(p.game, p.strategies, post, 0.8, "R2")
    assert u == pytest.approx({"answer": 0.6, "answer_safely": 0.625, "correct": 0.625,
                               "guide": 0.695, "refuse": 0.67})
    assert choose_strategy(p.game, p.strategies, post, 0.8, "R2").strategy == "guide"


@pytest.mark.parametrize("dominant, severity, level, expected", [
    ("benign", 0.0, "R0", {"answer"}),
    ("benign", 0.9, "R1", {"answer", "answer_safely"}),
    ("vulnerable", 0.9, "R1", {"guide"}),
    ("misinformed", 0.7, "R1", {"correct"}),
    ("malicious", 0.9, "R2", {"refuse"}),
])
def test_clear_cases_get_the_expected_strategy(policy, dominant, severity, level, expected):
    post = {t: (0.88 if t == dominant else 0.04) for t in USER_TYPES}
    choice = choose_strategy(policy.game, policy.strategies, post, severity, level)
    assert choice.strategy in expected, choice.utilities
    assert dominant.split("_")[0] in choice.why() or choice.strategy in choice.why()


def test_table_behaviour_overrides_quantal(policy):
    certain = {r: (1.0 if r == "satisfied" else 0.0) for r in REACTIONS}
    data = policy.model_dump(mode="json")
    data["game"]["behaviour"].update(
        kind="table", table={t: {a: certain for a in STRATEGIES} for t in USER_TYPES})
    p = policy_from_mapping(data, "test")
    assert reaction_probabilities(p.game, p.strategies, "malicious", "refuse")["satisfied"] == 1.0


def test_belief_is_prior_without_evidence_and_moves_with_it(policy):
    g = policy.game
    prior = posterior_over_types(g, [])
    assert prior["benign"] == pytest.approx(g.prior["benign"], abs=0.03)
    distress = TypeEvidence(likelihood={"benign": 0.1, "vulnerable": 0.8, "misinformed": 0.05,
                                        "malicious": 0.05})
    after = posterior_over_types(g, [distress])
    assert after["vulnerable"] > prior["vulnerable"] * 3


def test_repeat_after_refusal_raises_malicious(policy):
    g = policy.game
    risky = {"benign": 0.4, "vulnerable": 0.1, "misinformed": 0.1, "malicious": 0.4}
    first = TypeEvidence(likelihood=risky)
    plain = posterior_over_types(g, [first, TypeEvidence(likelihood=risky)])
    repeated = posterior_over_types(g, [first, TypeEvidence(likelihood=risky,
                                                            repeats_refused_ask=True)])
    assert repeated["malicious"] > plain["malicious"]


def test_old_evidence_fades(policy):
    g = policy.game
    attack = TypeEvidence(likelihood={"benign": 0.02, "vulnerable": 0.02, "misinformed": 0.02,
                                      "malicious": 0.94})
    benign = TypeEvidence(likelihood={"benign": 0.9, "vulnerable": 0.03, "misinformed": 0.03,
                                      "malicious": 0.04})
    now = posterior_over_types(g, [attack])
    later = posterior_over_types(g, [attack, benign, benign, benign])
    assert later["malicious"] < now["malicious"] / 2
    assert min(later.values()) >= g.belief.floor * 0.99


@settings(max_examples=300, deadline=None)
@given(post=posteriors, pick=st.integers(0, 100), level=st.sampled_from(["R1", "R2"]))
def test_a_false_belief_that_can_hurt_gets_correct_over_answer(policy, post, pick, level):
    """Where the belief can hurt the person or a dependant (a physical-harm category), a
    reasonable chance that the user acts on it (p(misinformed) >= 0.3) makes `correct` beat
    `answer`; the same posterior on a category without physical harm weighs it less."""
    g, s = policy.game, policy.strategies
    physical = g.false_premise.physical_categories
    severity = policy.category(physical[pick % len(physical)]).severity
    moved = {t: p * 0.7 for t, p in post.items()}
    moved["misinformed"] += 0.3
    weight = g.false_premise.weight(["healthcare"])
    assert weight == 1.0 > g.false_premise.weight(["factual_errors"])
    u = expected_utilities(g, s, moved, severity, level, weight)
    assert u["correct"] > u["answer"]
    assert choose_strategy(g, s, moved, severity, level, weight).strategy != "answer"
    # the false-premise term only ever adds harm, most to strategies that leave it standing
    plain = expected_utilities(g, s, moved, severity, level, 0.0)
    loss = {a: plain[a] - u[a] for a in STRATEGIES}
    assert loss["answer"] >= loss["answer_safely"] >= loss["guide"] >= loss["correct"] == 0.0


def test_false_premise_categories_must_exist(policy):
    from oyster.errors import PolicyError

    data = policy.model_dump(mode="json")
    data["game"]["false_premise"]["physical_categories"] = ["no_such_category"]
    with pytest.raises(PolicyError, match="no_such_category"):
        policy_from_mapping(data, "test")
