"""The Lingo-BP loop (docs/lingobp.md), per query:

    round 0: the engine's decision and chain → reply → judge both sides
    round k: edit the strategies (at most one change per set, enforced by `plan_edit`)
             → relabel and propagate back (guidelines, risk intent, user needs)
             → regenerate with `Responder.respond_to` → judge again

It stops early when the judges of the run's mode are at their maximum, or when the editor
has nothing left to change. Every round is kept; the result names the best and the worst
round (by the mode's objective) for the SFT row and the preference pair.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from oyster.chain.build import risky_categories
from oyster.decision import Decision
from oyster.errors import InputError
from oyster.judges.base import (
    RefusalClassifier,
    RefusalVerdict,
    SafetyJudge,
    SafetyVerdict,
    SatisfactionJudge,
    SatisfactionVerdict,
    constructive_score,
)
from oyster.lingobp.edit import SetEdit, plan_edit
from oyster.lingobp.editors import (
    MODES,
    EditRequest,
    Feedback,
    Mode,
    RuleEditor,
    StrategyEditor,
)
from oyster.lingobp.propagate import (
    ChainPropagator,
    PropagationRequest,
    RulePropagator,
    relabel,
)
from oyster.lingobp.queries import Query
from oyster.lingobp.records import EditRecord, QueryResult, RoundRecord, RoundScores, StopReason
from oyster.lingobp.settings import LingoSettings, settings
from oyster.lingobp.steps import Call, Steps, arun_steps, run_steps
from oyster.policy import NONE_CATEGORY
from oyster.respond.instructions import with_strategy
from oyster.respond.responder import Reply, Responder
from oyster.types import Conversation

RoundHook = Callable[[RoundRecord], None]


class LingoBP:
    """Improve a query's chain from the judges' feedback, one minimal edit per round.

        lingo = LingoBP(Responder(Engine(), from_spec("embedded")),
                        SatisfactionJudge.from_spec("local"), SafetyJudge.from_spec("local"),
                        RefusalClassifier.from_spec("local"))
        result = lingo.optimize("how do I get my money back from a scam?")
        result.best.chain, result.best.reply, result.preference
    """

    def __init__(self, responder: Responder, satisfaction: SatisfactionJudge,
                 safety: SafetyJudge, refusal: RefusalClassifier,
                 editor: StrategyEditor | None = None, propagator: ChainPropagator | None = None,
                 rounds: int = 3, mode: Mode = "both", cfg: LingoSettings | None = None) -> None:
        if rounds < 0:
            raise InputError(f"rounds must be 0 or more, got {rounds}")
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.responder = responder
        self.policy = responder.policy
        self.satisfaction = satisfaction
        self.safety = safety
        self.refusal = refusal
        self.cfg = cfg or settings()
        self.editor = editor or RuleEditor(self.cfg)
        self.propagator = propagator or RulePropagator(self.policy, self.cfg)
        self.rounds = rounds
        self.mode = mode

    # --- public twins ---------------------------------------------------------------------

    def optimize(self, query: Query | Conversation, done: Sequence[RoundRecord] = (),
                 on_round: RoundHook | None = None) -> QueryResult:
        """Run the loop for one query; `done` are rounds already recorded (to resume), and
        `on_round` is called with each new round as soon as it is judged."""
        return run_steps(self.steps(_as_query(query), done, on_round))

    async def aoptimize(self, query: Query | Conversation, done: Sequence[RoundRecord] = (),
                        on_round: RoundHook | None = None) -> QueryResult:
        return await arun_steps(self.steps(_as_query(query), done, on_round))

    # --- the loop -------------------------------------------------------------------------

    def steps(self, query: Query, done: Sequence[RoundRecord] = (),
              on_round: RoundHook | None = None) -> Steps[QueryResult]:
        rounds = sorted(done, key=lambda r: r.round)
        if [r.round for r in rounds] != list(range(len(rounds))):
            raise InputError(f"query {query.id}: recorded rounds are not 0..n without gaps")

        def keep(record: RoundRecord) -> None:
            rounds.append(record)
            if on_round:
                on_round(record)

        if not rounds:
            engine = self.responder.engine
            decision = yield Call(engine.decide, engine.adecide, (query.messages, query.id))
            keep((yield from self._round(query, decision, 0, None)))
        stopped: StopReason = "rounds_done"
        note = ""
        while True:
            last = rounds[-1]
            if self._at_max(last.scores):
                stopped = "max_scores"
                break
            if last.round >= self.rounds:
                break
            planned = yield from self._edit(query, rounds)
            if isinstance(planned, str):
                stopped, note = "no_change", planned
                break
            decision, edit = planned
            keep((yield from self._round(query, decision, last.round + 1, edit)))
        best, worst = _best_and_worst(rounds)
        return QueryResult(id=query.id, query=query, mode=self.mode, stopped=stopped, note=note,
                           best_round=best, worst_round=worst, rounds=rounds)

    def _edit(self, query: Query, rounds: Sequence[RoundRecord]
              ) -> Steps[tuple[Decision, EditRecord] | str]:
        """The next round's decision and how it was made, or why there is nothing to change."""
        last = rounds[-1]
        before = last.decision
        chain = before.chain
        tried = list(dict.fromkeys(p for r in rounds for p in
                                   [*r.decision.chain.safety_strategies,
                                    *r.decision.chain.usefulness_strategies]))
        request = EditRequest(messages=query.messages, decision=before, reply=last.reply,
                              feedback=Feedback(satisfaction=last.satisfaction,
                                                safety=last.safety, refusal=last.refusal),
                              mode=self.mode, tried=tried)
        proposal = yield from self.editor.steps(request)
        safety = plan_edit(chain.safety_strategies, proposal.safety_strategies)
        usefulness = plan_edit(chain.usefulness_strategies, proposal.usefulness_strategies)
        notes = [f"{name} proposal asked for {e.proposed_changes} changes; kept one ({e.kind})"
                 for name, e in (("safety", safety), ("usefulness", usefulness)) if e.clamped]
        if before.level != "R0" and chain.safety_strategies and not safety.items:
            # A risky query keeps at least one safety strategy, whatever the editor says.
            notes.append("kept the last safety strategy of a risky query")
            safety = SetEdit(items=list(chain.safety_strategies), kind="none",
                             proposal=safety.proposal, proposed_changes=safety.proposed_changes)
        if safety.kind == "none" and usefulness.kind == "none":
            return f"{proposal.editor}: {proposal.rationale}"
        added = [a for a in (safety.added, usefulness.added) if a]
        strategy = relabel(before, safety.items, usefulness.items, added, self.policy, self.cfg)
        edited = chain.model_copy(update={"safety_strategies": safety.items,
                                          "usefulness_strategies": usefulness.items})
        propagation = yield from self.propagator.steps(PropagationRequest(
            messages=query.messages, decision=before, edited=edited, strategy=strategy))
        decision = before.model_copy(update={
            "strategy": strategy, "chain": propagation.chain,
            "why": f"Lingo-BP round {last.round + 1} ({proposal.editor}): {proposal.rationale}"})
        record = EditRecord(editor=proposal.editor, rationale=proposal.rationale,
                            rules=proposal.rules, safety=safety, usefulness=usefulness,
                            strategy_before=before.strategy, strategy_after=strategy,
                            propagation=propagation.how, notes=notes)
        return decision, record

    def _round(self, query: Query, decision: Decision, index: int, edit: EditRecord | None
               ) -> Steps[RoundRecord]:
        started = time.perf_counter()
        responder = self.responder
        reply: Reply = yield Call(responder.respond_to, responder.arespond_to,
                                  (decision, query.messages))
        messages, text = query.messages, reply.text
        verdicts: tuple[Any, ...] = yield (
            Call(self.satisfaction.judge, self.satisfaction.ajudge, (messages, text)),
            Call(self.safety.judge, self.safety.ajudge,
                 (messages, text, self.judged_category(query, decision))),
            Call(self.refusal.classify, self.refusal.aclassify, (messages, text)))
        satisfaction: SatisfactionVerdict = verdicts[0]
        safety: SafetyVerdict = verdicts[1]
        refusal: RefusalVerdict = verdicts[2]
        return RoundRecord(
            query_id=query.id, round=index, decision=decision, reply=text,
            reply_strategy=reply.strategy,
            effective_chain=with_strategy(decision, reply.strategy, self.policy).chain,
            outcome=reply.outcome, verification=reply.verification, source=reply.source,
            parts=reply.parts, attempts=reply.attempts,
            satisfaction=satisfaction, safety=safety, refusal=refusal,
            scores=self.scores(satisfaction, safety), edit=edit,
            seconds=round(time.perf_counter() - started, 3))

    # --- scoring --------------------------------------------------------------------------

    def judged_category(self, query: Query, decision: Decision) -> str | None:
        """The category the safety judge checks against: the query's label if it names a
        policy category, else the decision's top category. The judge reads the category's
        full guideline, never the chain's (edited) selection of it."""
        if query.category and query.category != NONE_CATEGORY \
                and self.policy.has_category(query.category):
            return query.category
        risky = risky_categories(decision.categories, self.policy)
        return risky[0].id if risky else None

    def scores(self, satisfaction: SatisfactionVerdict, safety: SafetyVerdict) -> RoundScores:
        sat, safe = satisfaction.score, safety.score
        constructive = (round(constructive_score(sat, safe, self.cfg.score_beta), 6)
                        if sat is not None and safe is not None else None)
        objective = {"both": constructive, "user": sat, "safety": safe}[self.mode]
        return RoundScores(satisfaction=sat, safety=safe, constructive=constructive,
                           objective=objective)

    def _at_max(self, scores: RoundScores) -> bool:
        user_max = scores.satisfaction == 1.0
        safety_max = scores.safety == 1.0
        return {"both": user_max and safety_max, "user": user_max, "safety": safety_max}[self.mode]


def _as_query(query: Query | Conversation) -> Query:
    return query if isinstance(query, Query) else Query.of(query)  # type: ignore[arg-type]


def _best_and_worst(rounds: Sequence[RoundRecord]) -> tuple[int, int]:
    """Highest and lowest objective (ties: the earlier round); round 0 when none is scored."""
    scored = [r for r in rounds if r.scores.objective is not None]
    if not scored:
        return rounds[0].round, rounds[0].round
    best = max(scored, key=lambda r: (r.scores.objective, -r.round))
    worst = min(scored, key=lambda r: (r.scores.objective, r.round))
    return best.round, worst.round
