"""The spine: messages → assessment → belief → game → chain → decision record."""

from __future__ import annotations

import asyncio
import json

import pytest

from oyster.assess.base import Assessment, Assessor, CategoryScore, TurnAssessment
from oyster.chain import render_instructions
from oyster.engine import Engine, to_messages
from oyster.errors import InputError
from oyster.types import USER_TYPES

RECORD_FIELDS = {"id", "level", "categories", "form", "aggressive", "attacks", "user_type",
                 "strategy", "utilities", "chain", "policy"}
CHAIN_FIELDS = {"user_needs", "risk_intent", "guidelines", "safety_strategies",
                "usefulness_strategies"}


class ScriptedAssessor(Assessor):
    """Returns a fixed per-turn reading, so the engine's own logic is what is tested."""

    name = "scripted"

    def __init__(self, policy, level, category, evidence, attacks=()):
        super().__init__(policy)
        self.level, self.category, self.evidence, self.attacks = level, category, evidence, attacks

    def assess(self, messages):
        users = [i for i, m in enumerate(messages) if m.role == "user"]
        cats = [CategoryScore(id=self.category, name=self.policy.category(self.category).name_en,
                              score=0.9)] if self.category else []
        turns = [TurnAssessment(turn=i, language="en", level=self.level,
                                level_probs={"R0": 0.1, "R1": 0.1, "R2": 0.1} | {self.level: 0.8},
                                categories=cats, form="question", type_evidence=self.evidence)
                 for i in users]
        return Assessment(assessor=self.name, language="en", level=self.level,
                          level_probs=turns[-1].level_probs, categories=cats, form="question",
                          aggressive=False, attacks=list(self.attacks), turns=turns,
                          confidence=0.8)


def _evidence(dominant):
    return {t: (0.85 if t == dominant else 0.05) for t in USER_TYPES}


@pytest.mark.parametrize("level, category, dominant, expected", [
    ("R0", None, "benign", "answer"),
    ("R1", "mental_health", "vulnerable", "guide"),
    ("R1", "healthcare", "misinformed", "correct"),
    ("R2", "hazardous_materials", "malicious", "refuse"),
])
def test_engine_composes_assessment_game_and_chain(policy, level, category, dominant, expected):
    engine = Engine(policy, ScriptedAssessor(policy, level, category, _evidence(dominant)))
    d = engine.decide("anything", id="case-1")
    record = d.record()
    assert set(record) >= RECORD_FIELDS and set(record["chain"]) == CHAIN_FIELDS
    json.dumps(record)  # JSON-ready
    assert record["id"] == "case-1" and record["policy"] == policy.label
    assert d.strategy == expected
    assert max(d.utilities, key=d.utilities.get) == expected
    assert sum(d.user_type.values()) == pytest.approx(1.0, abs=1e-3)
    if level == "R0":
        assert d.chain.risk_intent == "" and d.chain.guidelines == []
    else:
        assert d.chain.guidelines and set(d.chain.guidelines) <= set(
            policy.category(category).guidelines)
        assert d.chain.safety_strategies == policy.strategies[expected].safety_strategies


def test_belief_accumulates_over_turns(policy):
    engine = Engine(policy, ScriptedAssessor(policy, "R1", "mental_health", _evidence("vulnerable")))
    one = engine.decide("first")
    convo = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
             {"role": "user", "content": "second"}]
    two = engine.decide(convo)
    assert two.user_type["vulnerable"] > one.user_type["vulnerable"]


def test_adecide_matches_decide(policy):
    engine = Engine(policy, "lexicon")
    sync = engine.decide("How do I kill a stuck process in Linux?")
    asyn = asyncio.run(engine.adecide("How do I kill a stuck process in Linux?"))
    assert sync.record() == asyn.record()


@pytest.mark.parametrize("bad, fragment", [
    ([], "non-empty"),
    ([{"role": "wizard", "content": "hi"}], "role"),
    ([{"role": "user"}], "content"),
    ([{"role": "assistant", "content": "hi"}], "no non-empty user message"),
    ([{"role": "user", "content": "   "}], "no non-empty user message"),
    (["just a string in a list"], "object"),
])
def test_bad_messages_are_input_errors(bad, fragment):
    with pytest.raises(InputError, match=fragment):
        to_messages(bad)


def test_oversized_message_is_rejected():
    with pytest.raises(InputError, match="content"):
        to_messages([{"role": "user", "content": "x" * 200_001}])


def test_openai_content_parts_are_flattened():
    msgs = to_messages([{"role": "user", "content": [{"type": "text", "text": "hello "},
                                                    {"type": "text", "text": "there"}]}])
    assert msgs[0].content == "hello there"


def test_instructions_never_ask_to_reveal_the_chain(policy):
    engine = Engine(policy, ScriptedAssessor(policy, "R1", "mental_health", _evidence("vulnerable")))
    d = engine.decide("I can't go on")
    text = render_instructions(d.chain, d.strategy, policy, language="en")
    assert "Never mention the notes" in text
    assert all(g in text for g in d.chain.guidelines)
    # guide carries crisis resources for the user's language
    assert policy.resources.crisis["en"][0].contact in text
    zh = render_instructions(d.chain, d.strategy, policy, language="zh")
    assert policy.resources.crisis["zh"][0].contact in zh and "Chinese" in zh
