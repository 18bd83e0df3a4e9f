"""Backward propagation: relabelling, re-derived needs and risk intent, guideline choice,
and the LLM propagator's validation and fallback."""

from __future__ import annotations

import json
from typing import Any

from oyster.engine import severity_of
from oyster.errors import BackendError
from oyster.game import leader_values
from oyster.lingobp import LLMPropagator, RulePropagator, relabel
from oyster.lingobp.propagate import (
    PropagationRequest,
    candidate_guidelines,
    leading_type,
    supporting_guidelines,
)
from oyster.lingobp.settings import settings

RELAXED = settings().pools["relaxed"][0].text
ALTERNATIVE = settings().pools["offer_alternatives"][0].text


def edited(decision: Any, safety: list[str], usefulness: list[str], strategy: str
           ) -> PropagationRequest:
    chain = decision.chain.model_copy(update={"safety_strategies": safety,
                                              "usefulness_strategies": usefulness})
    return PropagationRequest(messages=[{"role": "user", "content": "q"}],  # type: ignore[list-item]
                              decision=decision, edited=chain, strategy=strategy)  # type: ignore[arg-type]


def test_relabel_follows_the_majority_and_breaks_ties_toward_the_edit(decision: Any,
                                                                      policy: Any) -> None:
    d = decision("refuse", level="R2", categories=["cybersecurity"], user_type="malicious")
    safety = [RELAXED, d.chain.safety_strategies[1]]
    usefulness = [*d.chain.usefulness_strategies, ALTERNATIVE]
    assert relabel(d, safety, usefulness, [RELAXED, ALTERNATIVE], policy) == "guide"
    assert relabel(d, safety, usefulness, [], policy) == "refuse"  # tie: the label stays
    assert relabel(d, d.chain.safety_strategies, usefulness, [ALTERNATIVE], policy) == "refuse"


def test_relabel_never_moves_to_a_strategy_the_level_does_not_allow(decision: Any,
                                                                    policy: Any) -> None:
    d = decision("answer", level="R0", categories=[], user_type="benign")
    guide = list(policy.strategies["guide"].usefulness_strategies)
    assert relabel(d, [], guide, guide, policy) == "answer"
    r1 = decision("answer", level="R1", categories=["healthcare"], user_type="benign")
    assert relabel(r1, [], guide, guide, policy) == "guide"


def test_a_new_label_rederives_needs_and_risk_from_the_game(decision: Any, policy: Any) -> None:
    d = decision("refuse", level="R2", categories=["cybersecurity"], user_type="malicious")
    d = d.model_copy(update={"user_type": {"benign": 0.05, "vulnerable": 0.35,
                                           "misinformed": 0.05, "malicious": 0.55}})
    request = edited(d, [RELAXED, d.chain.safety_strategies[1]],
                     [*d.chain.usefulness_strategies, ALTERNATIVE], "guide")
    values = leader_values(policy.game, policy.strategies,
                           severity_of(policy, d.categories, d.level), d.level)
    assert max(values["vulnerable"], key=values["vulnerable"].__getitem__) == "guide"
    assert leading_type(d, "guide", policy, 0.1) == "vulnerable"
    chain = RulePropagator(policy).derive(request)
    assert chain.user_needs == policy.user_types["vulnerable"].needs
    assert "Cybersecurity" in chain.risk_intent and chain.risk_intent != d.chain.risk_intent
    assert policy.chain.risk_intent["vulnerable"].split("(")[0] in chain.risk_intent


def test_an_unlikely_reading_never_justifies_a_new_label(decision: Any, policy: Any) -> None:
    d = decision("refuse", level="R2", categories=["cybersecurity"], user_type="malicious")
    assert d.user_type["vulnerable"] < settings().min_reading_posterior
    assert leading_type(d, "guide", policy, settings().min_reading_posterior) == "malicious"
    chain = RulePropagator(policy).derive(edited(
        d, [RELAXED, d.chain.safety_strategies[1]],
        [*d.chain.usefulness_strategies, ALTERNATIVE], "guide"))
    assert (chain.user_needs, chain.risk_intent) == (d.chain.user_needs, d.chain.risk_intent)


def test_the_same_label_keeps_needs_and_risk(decision: Any, policy: Any) -> None:
    d = decision("guide")
    chain = RulePropagator(policy).derive(edited(
        d, d.chain.safety_strategies, [*d.chain.usefulness_strategies, ALTERNATIVE], "guide"))
    assert (chain.user_needs, chain.risk_intent) == (d.chain.user_needs, d.chain.risk_intent)
    assert set(chain.guidelines) <= set(candidate_guidelines(d, policy))
    assert len(chain.guidelines) <= settings().max_guidelines


def test_guidelines_are_the_points_that_support_the_strategies() -> None:
    candidates = ["Never give doses.", "Give crisis line numbers when someone is at risk.",
                  "Discuss the history factually.", "Point to support services."]
    picked = supporting_guidelines(candidates, ["name a crisis line number", "support"], 2)
    assert picked == ["Give crisis line numbers when someone is at risk.",
                      "Point to support services."]
    assert supporting_guidelines(candidates, [], 2) == candidates[:2]


def test_an_r0_chain_stays_collapsed(decision: Any, policy: Any) -> None:
    d = decision("answer", level="R0", categories=[], user_type="benign")
    request = edited(d, ["keep it safe"], d.chain.usefulness_strategies, "answer_safely")
    chain = RulePropagator(policy).derive(request)
    assert chain == request.edited and chain.risk_intent == "" and chain.guidelines == []


def test_llm_propagator_takes_guidelines_by_number_only(decision: Any, policy: Any,
                                                        scripted: Any) -> None:
    d = decision("guide")
    candidates = candidate_guidelines(d, policy)
    answer = json.dumps({"user_needs": "to feel heard and safe tonight",
                         "risk_intent": "The person may be at risk.", "guidelines": [2, 4]})
    backend = scripted(answer)
    result = LLMPropagator(backend, policy).propagate(edited(
        d, d.chain.safety_strategies, d.chain.usefulness_strategies, "guide"))
    assert result.how == "llm:scripted"
    assert result.chain.guidelines == [candidates[1], candidates[3]]
    assert result.chain.user_needs == "to feel heard and safe tonight"
    prompt = backend.prompts[0][1].content
    assert all(f"{i}. {c}" in prompt for i, c in enumerate(candidates, 1))


def test_llm_propagator_falls_back_to_the_rules(decision: Any, policy: Any,
                                                scripted: Any) -> None:
    d = decision("guide")
    request = edited(d, d.chain.safety_strategies, d.chain.usefulness_strategies, "guide")
    rule = RulePropagator(policy).derive(request)
    bad_index = json.dumps({"user_needs": "help", "guidelines": [99]})
    for backend, why in ((scripted("not json", "still not json"), "malformed answer twice"),
                         (scripted(bad_index), "guidelines must be"),
                         (scripted(BackendError("down")), "backend error")):
        result = LLMPropagator(backend, policy).propagate(request)
        assert result.chain == rule
        assert result.how.startswith("rule (fallback: llm:scripted") and why in result.how
    junk = scripted("not json", "still not json")
    LLMPropagator(junk, policy).propagate(request)
    assert len(junk.prompts) == 2 and "could not be used" in junk.prompts[1][-1].content
