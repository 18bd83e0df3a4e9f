"""Which replies become training targets (export, card): chosen = the best round that
passed verification, the model's text or the policy's; rejected = the model's attempts that
failed verification, rounds and bare replies the judges found unsafe or refusing a benign
ask, and the worst round. The backend is scripted (the edge): the embedded model cannot be
made to fail verification on cue. Engine, responder, verifier, export and card are real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from oyster.lingobp import EditProposal, EditRequest, Query, RunStore, StrategyEditor, export
from oyster.lingobp.bare import BARE_FILE, bare_record, read_bare
from oyster.lingobp.card import Slice, card_markdown, data_card
from oyster.lingobp.records import RunManifest
from oyster.lingobp.steps import Steps, finished
from oyster.train.data import load_preferences, load_sft

REFUSAL = "I can't help with that."
FEED = ("Feed your sourdough starter equal weights of flour and water every twelve hours and "
        "keep it somewhere warm.")
DISCARD = ("Discard most of the sourdough starter, then feed it fresh flour and lukewarm water "
           "twice a day; within three days it should double after each feed.")
BARE = ("A sourdough starter comes back when you feed it fresh flour and water and keep it "
        "warm for a few days.")


class AddsAStep(StrategyEditor):
    """Adds one usefulness strategy per round, so every round differs."""

    name: ClassVar[str] = "adds-a-step"

    def steps(self, request: EditRequest) -> Steps[EditProposal]:
        chain = request.decision.chain
        return finished(EditProposal(
            safety_strategies=list(chain.safety_strategies),
            usefulness_strategies=[*chain.usefulness_strategies, "give the feeding schedule"],
            rationale="one more step", editor=self.name))


def starter_query(id: str = "starter", kind: str = "benign") -> Query:
    return Query(id=id, messages=[{"role": "user",  # type: ignore[list-item]
                                   "content": "How do I revive a sourdough starter?"}],
                 language="en", level="R0", kind=kind, category=None)


@pytest.fixture
def store(tmp_path: Path, policy: Any) -> RunStore:
    run = RunStore(tmp_path / "run")
    run.start(RunManifest(data="d", data_sha256="x", backend="scripted", judge="scripted",
                          editor="adds-a-step", rounds=1, mode="both", policy=policy.label,
                          policy_fingerprint=policy.fingerprint(), assessor="default",
                          generation={}), resume=False)  # type: ignore[arg-type]
    return run


@pytest.fixture
def answer(decision: Any) -> Any:
    return decision("answer", level="R0", categories=[], user_type="benign")


@pytest.fixture
def guide(decision: Any) -> Any:
    return decision("guide", level="R1", categories=["mental_health"], user_type="vulnerable")


def at_risk_query() -> Query:
    return Query(id="at-risk", messages=[{"role": "user",  # type: ignore[list-item]
                 "content": "I keep thinking everyone would be better off without me."}],
                 language="en", level="R1", kind="distress", category="mental_health")


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_a_failed_attempt_is_rejected_and_the_regenerated_model_reply_chosen(
        store: RunStore, make_lingo: Any, scripted: Any, answer: Any, tmp_path: Path) -> None:
    lingo = make_lingo(satisfaction=[3], backend=scripted(REFUSAL, FEED), decision=answer,
                       rounds=0)
    result = lingo.optimize(starter_query())
    (round0,) = result.rounds
    assert (round0.outcome, round0.source, round0.reply) == ("regenerated", "model", FEED)
    assert [a.verification.problems for a in round0.attempts] == [["refusal_mismatch"], []]
    store.append_result(result)

    export(store.path, "sft", tmp_path / "sft.jsonl", tag="none")
    (sft,) = rows(tmp_path / "sft.jsonl")
    assert sft["messages"][-1] == {"role": "assistant", "content": FEED}
    assert sft["meta"] | {} == {"id": "starter", "language": "en", "level": "R0",
                                "kind": "benign", "category": None, "strategy": "answer",
                                "chosen_round": 0, "chosen_source": "model",
                                "chosen_outcome": "regenerated"}
    export(store.path, "preference", tmp_path / "pref.jsonl", tag="none")
    (pair,) = load_preferences(tmp_path / "pref.jsonl")  # the trainer's own validation
    assert (pair.chosen[0].content, pair.rejected[0].content) == (FEED, REFUSAL)
    assert rows(tmp_path / "pref.jsonl")[0]["meta"]["rejected"] == {
        "origin": "attempt", "round": 0, "reason": "failed_verification",
        "problems": ["refusal_mismatch"], "source": "model"}


def test_where_the_model_fails_the_policys_scaffold_is_chosen_never_its_stand_in(
        store: RunStore, make_lingo: Any, scripted: Any, answer: Any, guide: Any,
        tmp_path: Path) -> None:
    # a person at risk: the model's refusal fails, the policy's support scaffold goes out
    lingo = make_lingo(satisfaction=[1], backend=scripted(REFUSAL), decision=guide, rounds=0)
    store.append_result(lingo.optimize(at_risk_query()))
    # a benign ask the model never answers: only the policy's generic stand-in goes out
    lingo = make_lingo(satisfaction=[1], backend=scripted(REFUSAL), decision=answer, rounds=0)
    store.append_result(lingo.optimize(starter_query()))
    scaffold, stand_in = (r.rounds[0] for r in store.results())
    assert {p.kind for p in scaffold.parts} >= {"core"} and scaffold.source == "policy"
    assert [p.kind for p in stand_in.parts] == ["fallback"] and stand_in.verification.passed

    summary = export(store.path, "preference", tmp_path / "pref.jsonl", tag="none")
    assert summary.skipped == {"chosen_policy_fallback": 1}
    (row,) = rows(tmp_path / "pref.jsonl")
    assert row["meta"]["id"] == "at-risk" and row["meta"]["chosen_source"] == "policy"
    assert row["chosen"][0]["content"] == scaffold.reply != REFUSAL
    assert row["rejected"][0]["content"] == REFUSAL  # the two identical attempts: one pair
    assert export(store.path, "sft", tmp_path / "sft.jsonl").skipped == {"policy_fallback": 1}


def test_judged_failures_and_the_bare_reply_are_rejected_most_telling_first(
        store: RunStore, make_lingo: Any, scripted: Any, answer: Any, tmp_path: Path) -> None:
    # round 0 refuses (the judge says) a benign ask; round 1 is better; the bare model's
    # reply, judged after them, is unsafe
    backend = scripted(FEED, DISCARD, BARE)
    lingo = make_lingo(satisfaction=[-3, 5, 1], safety=["safe", "safe", "unsafe"],
                       refusal=["hard_refusal", "full_compliance", "full_compliance"],
                       backend=backend, decision=answer, rounds=1, editor=AddsAStep())
    result = lingo.optimize(starter_query())
    assert [r.reply for r in result.rounds] == [FEED, DISCARD]
    store.append_result(result)
    with open(store.path / BARE_FILE, "w", encoding="utf-8") as f:
        f.write(bare_record(lingo, backend, lingo.responder.params, result)
                .model_dump_json() + "\n")
    assert read_bare(store.path)["starter"].reply == BARE

    export(store.path, "preference", tmp_path / "pref.jsonl", tag="none")
    pairs = rows(tmp_path / "pref.jsonl")
    assert {p["chosen"][0]["content"] for p in pairs} == {DISCARD}
    assert [(p["rejected"][0]["content"], p["meta"]["rejected"]["origin"],
             p["meta"]["rejected"]["reason"]) for p in pairs] == \
        [(FEED, "round", "refused_benign"), (BARE, "bare", "unsafe")]
    assert export(store.path, "preference", tmp_path / "one.jsonl", tag="none",
                  max_pairs=1).rows == 1
    # with the chain as reasoning, each side carries its own round's chain
    export(store.path, "preference", tmp_path / "think.jsonl")
    assert all(len(p.chosen[0].content) > len(DISCARD) and
               p.rejected[0].content.startswith("<think>User needs:")
               for p in load_preferences(tmp_path / "think.jsonl"))
    (sft,) = load_sft(export(store.path, "sft", tmp_path / "sft.jsonl").out)
    assert sft.completion.content.endswith(DISCARD)


def test_a_lower_round_is_not_rejected_for_a_kind_that_may_be_refused(
        store: RunStore, make_lingo: Any, scripted: Any, decision: Any, tmp_path: Path) -> None:
    # a malicious ask refused in round 0: lower score, but no judged failure; it is still
    # the worst round, so it is rejected for its score only
    refuse_ok = decision("answer_safely", level="R1", categories=["legal_consultation"],
                         user_type="benign")
    lingo = make_lingo(satisfaction=[-3, 5], refusal=["hard_refusal", "full_compliance"],
                       backend=scripted(FEED, DISCARD), decision=refuse_ok, rounds=1,
                       editor=AddsAStep())
    query = starter_query("risky", kind="malicious").model_copy(update={"level": "R1"})
    store.append_result(lingo.optimize(query))
    export(store.path, "preference", tmp_path / "pref.jsonl", tag="none")
    ((reason, content),) = [(p["meta"]["rejected"]["reason"], p["rejected"][0]["content"])
                            for p in rows(tmp_path / "pref.jsonl")]
    assert reason == "lower_score" and content == FEED


def test_the_card_counts_rows_by_language_level_kind_and_strategy(
        store: RunStore, make_lingo: Any, scripted: Any, answer: Any, guide: Any) -> None:
    lingo = make_lingo(satisfaction=[3], backend=scripted(REFUSAL, FEED), decision=answer,
                       rounds=0)
    store.append_result(lingo.optimize(starter_query()))
    lingo = make_lingo(satisfaction=[1], backend=scripted(REFUSAL), decision=guide, rounds=0)
    store.append_result(lingo.optimize(at_risk_query()))
    card = data_card(store.path)
    assert (card.queries, card.sft_rows, card.preference_pairs, card.bare_replies) == (2, 2, 2, 0)
    assert card.by["kind"]["benign"].sft_rows == 1 and card.by["kind"]["distress"].queries == 1
    assert card.by["level"]["R0"].preference_pairs == 1
    assert card.by["language"]["en"].preference_pairs == 2
    assert card.by["strategy"] == {
        "answer": Slice(queries=1, sft_rows=1, preference_pairs=1, pair_queries=1),
        "guide": Slice(queries=1, sft_rows=1, preference_pairs=1, pair_queries=1)}
    assert card.chosen_source == {"model": 1, "policy": 1}
    assert card.rejected_reason == {"failed_verification": 2}
    assert card.rejected_problems["refusal_mismatch"] == 2
    text = card_markdown(card)
    assert "| distress | 1 | 1 | 1 | 1 |" in text and "model 1, policy 1" in text


@pytest.mark.parametrize(("kind", "kept"), [("false_belief", False), ("benign", False),
                                            ("malicious", True), ("attack", True)])
def test_a_refusal_is_never_chosen_for_an_ask_that_should_be_served(
        store: RunStore, make_lingo: Any, scripted: Any, decision: Any, tmp_path: Path,
        kind: str, kept: bool) -> None:
    refuse = decision("refuse", level="R1", categories=["legal_consultation"],
                      user_type="malicious")
    lingo = make_lingo(satisfaction=[-3], refusal=["hard_refusal"], backend=scripted(REFUSAL),
                       decision=refuse, rounds=0)
    store.append_result(lingo.optimize(starter_query(kind=kind)))
    assert store.results()[0].rounds[0].verification.passed
    summary = export(store.path, "sft", tmp_path / "sft.jsonl", tag="none")
    assert (summary.rows, summary.skipped) == ((1, {}) if kept else (0, {"refused_benign": 1}))


def test_a_refusal_of_a_benign_ask_is_rejected_even_when_the_judges_scored_it_higher(
        store: RunStore, make_lingo: Any, scripted: Any, answer: Any, tmp_path: Path) -> None:
    # the bare reply passes verification, the refusal judge calls it a hard refusal and the
    # satisfaction judge likes it better than the chosen round: still rejected
    backend = scripted(FEED, BARE)
    lingo = make_lingo(satisfaction=[1, 5], refusal=["full_compliance", "hard_refusal"],
                       backend=backend, decision=answer, rounds=0)
    result = lingo.optimize(starter_query())
    store.append_result(result)
    bare = bare_record(lingo, backend, lingo.responder.params, result)
    assert bare.verification.passed
    assert (bare.scores.objective or 0) > (result.rounds[0].scores.objective or 0)
    (store.path / BARE_FILE).write_text(bare.model_dump_json() + "\n", "utf-8")
    export(store.path, "preference", tmp_path / "pref.jsonl", tag="none")
    ((content, rejected),) = [(p["rejected"][0]["content"], p["meta"]["rejected"])
                              for p in rows(tmp_path / "pref.jsonl")]
    assert content == BARE and (rejected["origin"], rejected["reason"]) == \
        ("bare", "refused_benign")


def test_refusals_can_be_capped_to_a_share_of_the_sft_rows(
        store: RunStore, make_lingo: Any, scripted: Any, answer: Any, decision: Any,
        tmp_path: Path) -> None:
    refuse = decision("refuse", level="R2", categories=["legal_consultation"],
                      user_type="malicious")
    for i in range(3):
        lingo = make_lingo(backend=scripted(REFUSAL), decision=refuse, rounds=0)
        store.append_result(lingo.optimize(starter_query(f"malicious-{i}", kind="malicious")))
    lingo = make_lingo(backend=scripted(FEED), decision=answer, rounds=0)
    store.append_result(lingo.optimize(starter_query("benign")))
    assert export(store.path, "sft", tmp_path / "all.jsonl").rows == 4
    capped = export(store.path, "sft", tmp_path / "capped.jsonl", max_refusal_share=0.5)
    assert (capped.rows, capped.skipped) == (2, {"refusal_share": 2})
    assert [r["meta"]["id"] for r in rows(tmp_path / "capped.jsonl")] == ["malicious-0", "benign"]
    card = data_card(store.path, max_refusal_share=0.5)
    assert card.left_out["sft"] == {"refusal_share": 2}
    assert card.by["strategy"]["refuse"].queries == 3  # capped from SFT, still counted
    assert export(store.path, "sft", tmp_path / "none.jsonl", max_refusal_share=0).rows == 1
