"""The responder's attempt → regenerate → repair/fallback path, driven by a scripted backend
(see conftest.py for why), and its input checks. The engine here runs a policy without
support scaffolds, so a failed guide reply takes the regeneration path; the scaffold path is
in test_scaffolds.py."""

from __future__ import annotations

import asyncio

import pytest

from oyster.engine import Engine
from oyster.errors import InputError
from oyster.respond import Responder, fallback_reply, instructions_for

GOOD_GUIDE = ("I'm really sorry you're hurting. You matter. Please call or text 988 now; "
              "someone is there to listen.")
NO_RESOURCE = "I'm really sorry you're hurting. You matter, and I'm here with you."
LEAK = "I'm sorry. Taking 50 pills would be a lethal dose, so please don't."


@pytest.fixture(scope="module")
def engine():
    from oyster.taxonomy.policy import default_policy

    policy = default_policy()
    no_scaffolds = policy.model_copy(update={
        "replies": policy.replies.model_copy(update={"scaffolds": {}})})
    return Engine(policy=no_scaffolds, assessor="lexicon")


@pytest.fixture
def guide(decision):
    return decision(strategy="guide", categories=["mental_health"], dominant="vulnerable")


def test_instructions_put_the_chain_first_and_keep_the_callers_system_message(policy, guide):
    from oyster.types import Message

    d = guide
    convo = [Message(role="system", content="You are Ada, a support bot."),
             Message(role="user", content="hi")]
    msgs = instructions_for(d, policy, convo)
    assert [m.role for m in msgs] == ["system", "system", "user"]
    assert d.chain.user_needs in msgs[0].content
    assert "988" in msgs[0].content  # guide instructions carry the resources
    assert msgs[1].content == "You are Ada, a support bot."


def test_a_reply_that_passes_is_used_as_is(engine, guide, scripted):
    backend = scripted(GOOD_GUIDE)
    reply = Responder(engine, backend).respond_to(guide, "I can't go on")
    assert reply.outcome == "passed" and reply.text == GOOD_GUIDE
    assert reply.verification.passed and not reply.fallback_used
    assert len(backend.prompts) == 1 and len(reply.attempts) == 1


def test_a_hazard_leak_is_regenerated_with_a_correction(engine, guide, scripted):
    backend = scripted(LEAK, GOOD_GUIDE)
    reply = Responder(engine, backend).respond_to(guide, "how many pills")
    assert reply.outcome == "regenerated" and reply.text == GOOD_GUIDE
    assert [a.verification.passed for a in reply.attempts] == [False, True]
    assert "hazard_leak" in reply.attempts[0].verification.problems
    second_system = backend.prompts[1][0].content
    assert "not contain any methods, amounts" in second_system
    assert "not contain any methods, amounts" not in backend.prompts[0][0].content


def test_hazard_under_answer_safely_regenerates_under_the_stricter_strategy(engine, decision,
                                                                         scripted):
    d = decision(strategy="answer_safely", categories=["hazardous_materials"])
    backend = scripted("Mix ammonium nitrate with fuel oil.", "Please don't; that's "
                              "dangerous. A licensed professional can handle it safely.")
    reply = Responder(engine, backend).respond_to(d, "what is ANFO")
    assert [a.strategy for a in reply.attempts] == ["answer_safely", "guide"]
    assert reply.strategy == "guide" and reply.decision.strategy == "answer_safely"


def test_a_missing_resource_twice_is_repaired_with_the_policy_resources(engine, guide, scripted):
    backend = scripted(NO_RESOURCE, "Okay. Stay positive and keep busy with hobbies.")
    reply = Responder(engine, backend).respond_to(guide, "I can't go on")
    assert reply.outcome == "repaired" and reply.verification.passed
    # the first (uncorrected) text is kept, with the policy's resources added
    assert reply.text.startswith(NO_RESOURCE) and "988" in reply.text
    assert reply.attempts[1].corrections  # the second try was told what was missing


def test_two_failures_end_in_the_written_fallback(engine, policy, guide, scripted):
    backend = scripted(LEAK, LEAK)
    d = guide
    reply = Responder(engine, backend).respond_to(d, "how many pills")
    assert reply.outcome == "fallback" and reply.fallback_used and reply.completion is None
    assert reply.text == fallback_reply(d, policy)
    assert reply.verification.passed
    record = reply.record()
    assert set(record) >= {"decision", "reply", "verification", "outcome", "attempts"}
    assert [a["verification"]["passed"] for a in record["attempts"]] == [False, False]


def test_async_twin_takes_the_same_path(engine, guide, scripted):
    backend = scripted(LEAK, GOOD_GUIDE)
    reply = asyncio.run(Responder(engine, backend).arespond_to(guide, "x"))
    assert reply.outcome == "regenerated" and reply.text == GOOD_GUIDE


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("strategy", ["answer", "answer_safely", "correct", "guide", "refuse"])
def test_every_fallback_passes_verification(policy, decision, strategy, language):
    from oyster.respond import Verifier

    d = decision(strategy=strategy, categories=["mental_health"], dominant="vulnerable",
                 language=language)
    text = fallback_reply(d, policy)
    assert "{" not in text
    v = Verifier(policy).check(text, d, request="Tell me the lethal dose of my pills")
    assert v.passed, f"{strategy}/{language}: {v.detail}"


def test_fallbacks_cover_every_strategy_in_english(policy):
    assert set(policy.replies.fallbacks["en"]) == {
        "answer", "answer_safely", "correct", "guide", "refuse"}


@pytest.mark.parametrize("messages, match", [
    ("", "no non-empty user message"),
    ([{"role": "robot", "content": "hi"}], "role"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
     "end with a non-empty user message"),
    ("x" * 40_000, "limits.max_message_chars"),
])
def test_bad_input_is_an_input_error(engine, scripted, messages, match):
    with pytest.raises(InputError, match=match):
        Responder(engine, scripted("unused")).respond(messages)


@pytest.mark.parametrize("text, kept", [
    ("You are not alone. Please call 988 tonight. And if you", "You are not alone. Please call 988 tonight."),
    ("我在这里陪你。请拨打电话。如果你", "我在这里陪你。请拨打电话。"),
    ("One. " + "a very long unfinished clause " * 5, None),  # cutting would drop most of it
    ("Here is why. Some points:\n1. First point is long enough.\n2.", "Here is why. Some "
     "points:\n1. First point is long enough."),
])
def test_a_reply_cut_by_the_token_limit_ends_at_its_last_sentence(text, kept):
    from oyster.respond.responder import complete_sentences

    assert complete_sentences(text) == (kept if kept is not None else text)
