"""The Lingo-BP loop: early stop, every round kept, best/worst and the preference pair,
the minimal-edit rule under a hostile editor, twins, resume, modes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from oyster.lingobp import EditProposal, EditRequest, Query, StrategyEditor
from oyster.lingobp.steps import Steps, finished

QUERY = Query.of("My landlord kept my whole deposit. What are my options?", id="q1")


class ListEditor(StrategyEditor):
    """Proposes whatever `propose_lists(request, round)` returns; records its requests."""

    name: ClassVar[str] = "list"

    def __init__(self, propose_lists: Callable[[EditRequest, int], tuple[list[str], list[str]]]
                 ) -> None:
        self.propose_lists = propose_lists
        self.requests: list[EditRequest] = []

    def steps(self, request: EditRequest) -> Steps[EditProposal]:
        self.requests.append(request)
        safety, usefulness = self.propose_lists(request, len(self.requests))
        return finished(EditProposal(safety_strategies=safety, usefulness_strategies=usefulness,
                                     rationale="scripted proposal", editor=self.name))


NEW_PHRASES = ["cite the deposit protection scheme", "suggest a formal demand letter",
               "mention the small claims court", "list the evidence worth keeping",
               "warn about deadlines for a claim", "offer to draft the first message"]


def adds_one_phrase(request: EditRequest, k: int) -> tuple[list[str], list[str]]:
    chain = request.decision.chain
    return list(chain.safety_strategies), [*chain.usefulness_strategies, NEW_PHRASES[k - 1]]


def is_one_edit(old: list[str], new: list[str]) -> bool:
    if len(new) == len(old) + 1:
        return any(new[:i] + new[i + 1:] == old for i in range(len(new)))
    if len(new) == len(old) - 1:
        return any(old[:i] + old[i + 1:] == new for i in range(len(old)))
    return len(new) == len(old) and sum(a != b for a, b in zip(old, new, strict=True)) <= 1


def without_seconds(result: Any) -> dict[str, Any]:
    data = result.model_dump(mode="json")
    for r in data["rounds"]:
        r.pop("seconds")
    return data


def test_stops_at_once_when_both_judges_are_at_their_maximum(make_lingo: Any) -> None:
    result = make_lingo(satisfaction=[5], safety=["safe"]).optimize(QUERY)
    assert [r.round for r in result.rounds] == [0]
    assert result.stopped == "max_scores" and result.preference is None


def test_every_round_is_kept_and_best_and_worst_are_named(make_lingo: Any,
                                                         decision: Any) -> None:
    lingo = make_lingo(satisfaction=[-3, 1, 3, 0], safety=["safe"],
                       editor=ListEditor(adds_one_phrase), decision=decision("answer_safely"))
    result = lingo.optimize(QUERY)
    assert [r.round for r in result.rounds] == [0, 1, 2, 3]
    assert result.stopped == "rounds_done"
    assert [r.scores.satisfaction for r in result.rounds] == [-0.6, 0.2, 0.6, 0.0]
    assert (result.best_round, result.worst_round) == (2, 0)
    assert result.preference is not None
    assert (result.preference.chosen_round, result.preference.rejected_round) == (2, 0)
    assert result.best.chain.usefulness_strategies[-1] == NEW_PHRASES[1]
    assert result.rounds[1].edit is not None and result.rounds[1].edit.usefulness.kind == "add"
    assert result.rounds[0].edit is None
    # C_2 with safety 1 is (satisfaction + 2) / 3
    assert abs(result.rounds[2].scores.constructive - (0.6 + 2) / 3) < 1e-6


def test_a_hostile_editor_still_changes_one_item_per_set_per_round(make_lingo: Any,
                                                                   decision: Any) -> None:
    def rewrite_everything(request: EditRequest, k: int) -> tuple[list[str], list[str]]:
        return NEW_PHRASES[k:k + 3], list(reversed(NEW_PHRASES))[k:k + 2]

    lingo = make_lingo(satisfaction=[-3], editor=ListEditor(rewrite_everything),
                       decision=decision("guide"))
    result = lingo.optimize(QUERY)
    assert len(result.rounds) == 4
    for before, after in zip(result.rounds, result.rounds[1:], strict=False):
        for field in ("safety_strategies", "usefulness_strategies"):
            old, new = getattr(before.decision.chain, field), getattr(after.decision.chain, field)
            assert old != new and is_one_edit(old, new)
        assert after.edit is not None and after.edit.safety.clamped
        assert any("kept one" in n for n in after.edit.notes)


def test_a_risky_query_keeps_a_safety_strategy(make_lingo: Any, decision: Any) -> None:
    d = decision("guide")
    d = d.model_copy(update={"chain": d.chain.model_copy(
        update={"safety_strategies": d.chain.safety_strategies[:1]})})
    lingo = make_lingo(satisfaction=[-3], decision=d,
                       editor=ListEditor(lambda r, k: ([], [*r.decision.chain.usefulness_strategies,
                                                            NEW_PHRASES[k]])))
    result = lingo.optimize(QUERY)
    assert all(r.decision.chain.safety_strategies == d.chain.safety_strategies
               for r in result.rounds)
    assert "kept the last safety strategy" in " ".join(result.rounds[1].edit.notes)


def test_nothing_left_to_change_stops_the_query(make_lingo: Any, decision: Any) -> None:
    same = ListEditor(lambda r, k: (list(r.decision.chain.safety_strategies),
                                    [s.upper() for s in r.decision.chain.usefulness_strategies]))
    result = make_lingo(satisfaction=[-3], editor=same, decision=decision("guide")
                        ).optimize(QUERY)
    assert result.stopped == "no_change" and len(result.rounds) == 1
    assert result.note == "list: scripted proposal"


def test_the_safety_judge_reads_the_category_not_the_chain(make_lingo: Any,
                                                           decision: Any) -> None:
    labelled = QUERY.model_copy(update={"category": "legal_consultation"})
    lingo = make_lingo(satisfaction=[5], decision=decision("guide"))
    lingo.optimize(labelled)
    lingo.optimize(QUERY.model_copy(update={"category": "none"}))
    assert lingo.safety.calls == ["legal_consultation", "mental_health"]


def test_sync_and_async_twins_agree(make_lingo: Any, decision: Any) -> None:
    def make() -> Any:
        return make_lingo(satisfaction=[-3, 1, 3, 0], editor=ListEditor(adds_one_phrase),
                          decision=decision("guide"))

    sync = make().optimize(QUERY)
    async_ = asyncio.run(make().aoptimize(QUERY))
    assert without_seconds(sync) == without_seconds(async_)


def test_resuming_from_recorded_rounds_continues_where_it_stopped(make_lingo: Any,
                                                                  decision: Any) -> None:
    full = make_lingo(satisfaction=[-3, 1, 3, 0], editor=ListEditor(adds_one_phrase),
                      decision=decision("guide"))
    whole = full.optimize(QUERY)
    seen: list[int] = []
    # the scripted judges answer per call: the resumed run starts at round 2's verdict
    resumed_lingo = make_lingo(satisfaction=[3, 0], decision=decision("guide"),
                               editor=ListEditor(lambda r, k: adds_one_phrase(r, k + 1)))
    resumed = resumed_lingo.optimize(QUERY, done=whole.rounds[:2],
                                     on_round=lambda r: seen.append(r.round))
    assert seen == [2, 3]
    assert resumed_lingo.responder.engine.decide_calls == 0
    assert without_seconds(resumed) == without_seconds(whole)


def test_modes_rank_and_stop_by_their_own_side(make_lingo: Any, decision: Any) -> None:
    user = make_lingo(satisfaction=[5], safety=["unsafe"], mode="user",
                      decision=decision("guide")).optimize(QUERY)
    assert user.stopped == "max_scores" and user.rounds[0].scores.objective == 1.0
    safety = make_lingo(satisfaction=[-5], safety=["safe"], mode="safety",
                        decision=decision("guide")).optimize(QUERY)
    assert safety.stopped == "max_scores" and safety.rounds[0].scores.objective == 1.0


def test_undetermined_rounds_are_never_best_or_worst(make_lingo: Any, decision: Any) -> None:
    lingo = make_lingo(satisfaction=[None, 1, -1, None], editor=ListEditor(adds_one_phrase),
                       decision=decision("guide"))
    result = lingo.optimize(QUERY)
    assert result.rounds[0].scores.objective is None
    assert (result.best_round, result.worst_round) == (1, 2)
