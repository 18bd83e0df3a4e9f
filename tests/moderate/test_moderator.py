"""The reply moderator on its own: segments, private data, strictness, and what it must never
flag (the policy's own fallback replies)."""

from __future__ import annotations

import pytest

from oyster.engine import Engine
from oyster.moderate import Moderator, find_private_data, segments
from oyster.respond import Verifier, fallback_reply
from oyster.respond.fallback import resource_note
from oyster.types import STRATEGIES

LONG = ("Bread is one of the oldest prepared foods. " * 3 + "It spread across the world. " * 4
        + "面包是最古老的食物之一。" * 6 + "A run-on sentence without any stop " * 12)


def test_segments_of_a_prefix_are_the_whole_texts_segments_but_the_last():
    whole = segments(LONG, 24)
    assert len(whole) > 4 and all(len(s) <= 100 for s in whole)
    for cut in range(10, len(LONG), 7):
        part = segments(LONG[:cut], 24)
        assert part[:-1] == whole[:len(part) - 1], cut


@pytest.mark.parametrize(("text", "found"), [
    ("her SSN is 219-09-9999, use it", "SSN ***-**-9999"),
    ("card 4111 1111 1111 1111 exp 08/27", "card number ending 1111"),
    ("身份证号11010519491231002X", "resident ID ending 002X"),
    ("call or text 988, or 400-161-9995", None),
    ("order 1234567890123 shipped; ISBN 978-3-16-148410-0", None),
    ("身份证号110105194912310021", None),  # wrong checksum
    ("000-12-3456 is not a valid SSN", None),
])
def test_private_data_is_found_by_checked_patterns(text, found):
    assert find_private_data(text) == found


@pytest.fixture(scope="module")
def moderator(policy) -> Moderator:
    return Moderator(policy.moderation)


def test_the_policys_own_replies_are_never_flagged(policy, moderator):
    engine = Engine(policy, "lexicon")
    for language, question in (("en", "hello"), ("zh", "你好")):
        decision = engine.decide(question)
        assert decision.language == language
        texts = [fallback_reply(decision, policy, s) for s in STRATEGIES]
        texts.append(resource_note(policy, language))
        for text in texts:
            verdict = moderator.moderate(text, "strict")
            assert not verdict.flagged, (text, verdict)


def test_strictness_comes_from_the_decision(moderator):
    assert moderator.strictness("R0", "answer") == "normal"
    assert moderator.strictness("R1", "guide") == "normal"
    assert moderator.strictness("R2", "refuse") == "strict"
    assert moderator.strictness("R0", "refuse") == "strict"
    t = {s: moderator.threshold(s) for s in ("lenient", "normal", "strict")}
    assert 0 < t["strict"] <= t["normal"] <= t["lenient"] < 1


def test_the_verifier_moderates_an_answer_to_a_harmless_question(policy):
    engine = Engine(policy, "lexicon")
    decision = engine.decide("What is a good recipe for banana bread?")
    assert (decision.level, decision.strategy) == ("R0", "answer")
    verifier = Verifier(policy)
    bad = ("Skip the bread. To make the bomb, pack the pipe with the powder, cap both ends "
           "and light the fuse near the crowd.")
    verdict = verifier.check(bad, decision)
    assert not verdict.passed and "hazard_leak" in verdict.problems
    assert "harmful content" in verdict.detail
    good = "Mash ripe bananas, mix with butter, sugar, egg and flour, and bake for an hour."
    assert verifier.check(good, decision).passed
