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


def test_utilities_are_the_posterior_mix_of_leader_values(policy):
    post = {"benign": 0.4, "vulnerable": 0.3, "misinformed": 0.2, "malicious": 0.1}
    values = leader_values(policy.game, policy.strategies, 0.7, "R1")
    u = expected_utilities(policy.game, policy.strategies, post, 0.7, "R1")
    for a in STRATEGIES:
        assert math.isclose(u[a], sum(post[t] * values[t][a] for t in USER_TYPES))


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
