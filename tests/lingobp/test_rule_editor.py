"""The rule-based editor reads the judges' structured verdicts (design.md §7 rule of thumb)."""

from __future__ import annotations

from typing import Any

from oyster.lingobp import EditRequest, RuleEditor, relabel
from oyster.lingobp.settings import settings

POOLS = settings().pools


def pool(name: str) -> list[str]:
    return [p.text for p in POOLS[name]]


def request(decision: Any, feedback: Any, **kw: Any) -> EditRequest:
    return EditRequest(messages=[{"role": "user", "content": "q"}],  # type: ignore[list-item]
                       decision=decision, reply="r", feedback=feedback, **kw)


ALL_GOOD_BUT = {"politeness": 1, "willingness": 1, "task_completion": 1, "logic": 1,
                "informativeness": 1}


def test_unsafe_reply_strengthens_safety_and_nothing_else(decision: Any, verdicts: Any) -> None:
    d = decision("guide")
    p = RuleEditor().edit(request(d, verdicts(satisfaction=-3, safety="mostly_safe",
                                              refusal="partial")))
    assert p.rules == ["strengthen_safety"]
    assert p.safety_strategies == [*d.chain.safety_strategies, pool("strengthen")[0]]
    assert p.usefulness_strategies == d.chain.usefulness_strategies


def test_safe_flat_refusal_is_relaxed_within_the_guidelines(decision: Any, verdicts: Any,
                                                            policy: Any) -> None:
    d = decision("refuse", level="R2", categories=["cybersecurity"], user_type="vulnerable")
    p = RuleEditor().edit(request(d, verdicts(satisfaction=-3, refusal="hard_refusal")))
    assert p.rules == ["relax_over_strict_safety", "offer_alternatives"]
    relaxed = pool("relaxed")[0]
    assert p.safety_strategies == [relaxed, d.chain.safety_strategies[1]]
    assert p.usefulness_strategies == [*d.chain.usefulness_strategies,
                                       pool("offer_alternatives")[0]]
    added = [relaxed, pool("offer_alternatives")[0]]
    assert relabel(d, p.safety_strategies, p.usefulness_strategies, added, policy) == "guide"


def test_information_phrase_fits_the_current_strategy(decision: Any, verdicts: Any) -> None:
    low_info = verdicts(satisfaction={**ALL_GOOD_BUT, "informativeness": 0})
    answer = RuleEditor().edit(request(decision("answer", level="R0", categories=[],
                                                user_type="benign"), low_info))
    guide = RuleEditor().edit(request(decision("guide"), low_info))
    assert answer.rules == guide.rules == ["add_information"]
    assert answer.usefulness_strategies[-1] == pool("information")[0]
    assert guide.usefulness_strategies[-1] == pool("information")[2]


def test_an_over_refused_ordinary_question_is_answered(decision: Any, verdicts: Any) -> None:
    d = decision("answer", level="R0", categories=[], user_type="benign")
    p = RuleEditor().edit(request(d, verdicts(satisfaction=-2, refusal="hard_refusal")))
    assert p.rules[0] == "answer_fully"
    assert p.usefulness_strategies[-1] == pool("answer_directly")[0]
    assert p.safety_strategies == []


def test_the_hard_line_stays_against_a_user_read_as_malicious(decision: Any,
                                                              verdicts: Any) -> None:
    d = decision("refuse", level="R2", categories=["cybersecurity"], user_type="malicious")
    p = RuleEditor().edit(request(d, verdicts(satisfaction=-3, refusal="hard_refusal")))
    assert p.safety_strategies == d.chain.safety_strategies
    assert p.rules == ["offer_alternatives"]


def test_mode_user_ignores_the_safety_verdict(decision: Any, verdicts: Any) -> None:
    d = decision("guide")
    feedback = verdicts(satisfaction={**ALL_GOOD_BUT, "informativeness": 0}, safety="unsafe")
    p = RuleEditor().edit(request(d, feedback, mode="user"))
    assert p.rules == ["add_information"]
    assert p.safety_strategies == d.chain.safety_strategies


def test_mode_safety_ignores_the_user_side(decision: Any, verdicts: Any) -> None:
    d = decision("refuse", level="R2", categories=["cybersecurity"], user_type="malicious")
    p = RuleEditor().edit(request(d, verdicts(satisfaction=-5, refusal="hard_refusal"),
                                  mode="safety"))
    assert p.rules == []
    assert (p.safety_strategies, p.usefulness_strategies) == \
        (d.chain.safety_strategies, d.chain.usefulness_strategies)


def test_undetermined_verdicts_trigger_nothing(decision: Any, verdicts: Any) -> None:
    from oyster.judges.base import SafetyVerdict, SatisfactionVerdict

    base = verdicts()
    feedback = base.model_copy(update={
        "satisfaction": SatisfactionVerdict.undetermined("t", "no"),
        "safety": SafetyVerdict(judge="t", label="undetermined")})
    assert RuleEditor().edit(request(decision("guide"), feedback)).rules == []


def test_phrases_tried_before_are_not_added_again(decision: Any, verdicts: Any) -> None:
    d = decision("guide")
    first = pool("strengthen")[0]
    p = RuleEditor().edit(request(d, verdicts(safety="unsafe"), tried=[first.upper()]))
    assert p.safety_strategies[-1] == pool("strengthen")[1]


def test_a_full_set_makes_room_by_replacing_its_last_item(decision: Any, verdicts: Any) -> None:
    cfg = settings().model_copy(update={"max_items": 2})
    d = decision("guide")
    p = RuleEditor(cfg).edit(request(d, verdicts(safety="unsafe")))
    assert p.safety_strategies == [d.chain.safety_strategies[0], pool("strengthen")[0]]


def test_when_the_pools_run_dry_nothing_is_proposed(decision: Any, verdicts: Any) -> None:
    d = decision("guide")
    p = RuleEditor().edit(request(d, verdicts(safety="unsafe"), tried=pool("strengthen")))
    assert p.rules == [] and p.safety_strategies == d.chain.safety_strategies


def test_warmth_is_added_where_support_is_needed_not_to_plain_answers(decision: Any,
                                                                      verdicts: Any) -> None:
    neutral = verdicts(satisfaction={**ALL_GOOD_BUT, "politeness": 0})
    plain = RuleEditor().edit(request(decision("answer", level="R0", categories=[],
                                               user_type="benign"), neutral))
    support = RuleEditor().edit(request(decision("guide"), neutral))
    assert plain.rules == [] and support.rules == ["add_warmth"]
    assert support.usefulness_strategies[-1] == pool("empathy")[0]
    cold = RuleEditor().edit(request(decision("answer", level="R0", categories=[],
                                              user_type="benign"),
                                     verdicts(satisfaction={**ALL_GOOD_BUT, "politeness": -1})))
    assert cold.rules == ["add_empathy"]
