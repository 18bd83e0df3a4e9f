"""The engine: messages → assessment → belief → game → chain → decision."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from oyster import telemetry
from oyster.assess import from_spec as assessor_from_spec
from oyster.assess.base import WARM_UP_TEXT, Assessment, Assessor, CategoryScore
from oyster.assess.microbatch import MicroBatcher
from oyster.budget import check_size, work_budget
from oyster.chain import build_chain
from oyster.decision import Decision
from oyster.game import TypeEvidence, choose_strategy, posterior_over_types
from oyster.policy import NONE_CATEGORY, Policy, load_policy

# the conversation readers live in types; imported from here by code written before they moved
from oyster.types import Conversation, Level, Message, read_conversation
from oyster.types import ConversationText as ConversationText
from oyster.types import to_messages as to_messages

DEFAULT_ASSESSOR = "default"


def _annotate(span: Any, assessment: Assessment) -> None:
    if span.is_recording():
        span.set_attributes(telemetry.assessment_attributes(assessment))


def _annotated(span: Any, decision: Decision) -> Decision:
    if span.is_recording():
        span.set_attributes(telemetry.decision_attributes(decision))
    return decision


def severity_of(policy: Policy, categories: Iterable[CategoryScore], level: Level) -> float:
    """The worst score-weighted category severity; a risky turn that matches no known
    category weighs the policy's `unknown_category_severity`."""
    risky = [c for c in categories if c.id != NONE_CATEGORY and policy.has_category(c.id)]
    sev = max((c.score * policy.category(c.id).severity for c in risky), default=0.0)
    if level != "R0" and sev == 0.0:
        return policy.game.unknown_category_severity
    return sev


def premise_weight_of(policy: Policy, categories: Iterable[CategoryScore]) -> float:
    """How much a false premise left standing weighs for these categories
    (`game.false_premise`: 1 where it can cause physical harm)."""
    return policy.game.false_premise.weight([c.id for c in categories])


class Engine:
    """Decide, turn by turn, what risk is present, who is probably asking, and which
    strategy gives the best anticipated outcome.

        engine = Engine()                      # default policy and assessor
        d = engine.decide("how do I kill a stuck process?")
        d.strategy, d.utilities, d.chain
    """

    def __init__(self, policy: Policy | str | None = None,
                 assessor: Assessor | str | None = None) -> None:
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        self.assessor = (assessor if isinstance(assessor, Assessor)
                         else assessor_from_spec(assessor or DEFAULT_ASSESSOR, self.policy))
        # set by `batch_concurrent`: `adecide` calls then share assessor calls
        self.micro_batcher: MicroBatcher | None = None

    def warm_up(self) -> None:
        """Load every model the assessor may use and decide one message, so the first
        real decision does not pay for loading (`oyster serve` does this at start-up)."""
        self.assessor.warm_up()
        self.decide(WARM_UP_TEXT)

    def batch_concurrent(self, window_s: float, max_batch: int = 32) -> None:
        """Let concurrent `adecide` calls share one assessor call: each waits at most
        `window_s` for others (see `oyster.assess.microbatch`); 0 turns it off."""
        self.micro_batcher = (MicroBatcher(self.assessor, window_s, max_batch)
                              if window_s > 0 else None)

    def severity(self, assessment: Assessment) -> float:
        """The harm weight of this turn: the worst score-weighted category severity."""
        return severity_of(self.policy, assessment.categories, assessment.level)

    def decide_assessed(self, assessment: Assessment, id: str | None = None,
                        ignored: Sequence[str] = ()) -> Decision:
        """The game and the chain on an assessment already made; `ignored` lists what the
        reading of the conversation left out (it goes into the decision's notes)."""
        policy = self.policy
        with telemetry.span("oyster.game") as span:
            evidence = [TypeEvidence(likelihood=t.type_evidence,
                                     repeats_refused_ask=t.repeats_refused_ask)
                        for t in assessment.turns]
            posterior = posterior_over_types(policy.game, evidence)
            choice = choose_strategy(policy.game, policy.strategies, posterior,
                                     self.severity(assessment), assessment.level,
                                     premise_weight_of(policy, assessment.categories))
            if span.is_recording():
                likely = max(posterior, key=posterior.__getitem__)
                span.set_attributes({"oyster.strategy": choice.strategy,
                                     "oyster.user_type": likely,
                                     "oyster.user_type.p": round(posterior[likely], 4),
                                     "oyster.utility": choice.utilities[choice.strategy]})
        with telemetry.span("oyster.chain", {"oyster.strategy": choice.strategy}):
            chain = build_chain(assessment, choice.strategy, posterior, policy)
        return Decision(
            id=id,
            level=assessment.level,
            categories=[c for c in assessment.categories if c.id != NONE_CATEGORY],
            form=assessment.form,
            aggressive=assessment.aggressive,
            attacks=sorted({a.technique for a in assessment.attacks}),
            user_type={t: round(p, 4) for t, p in posterior.items()},
            strategy=choice.strategy,
            utilities=choice.utilities,
            chain=chain,
            policy=policy.label,
            language=assessment.language,
            why=choice.why(),
            notes=[*ignored, *assessment.notes],
            payloads=assessment.payloads,
            assessment=assessment,
        )

    def read(self, conversation: Conversation | ConversationText) -> ConversationText:
        """The conversation as read, checked against the policy's size limits."""
        text = (conversation if isinstance(conversation, ConversationText)
                else read_conversation(conversation))
        check_size(text.messages, self.policy.limits)
        return text

    def decide(self, conversation: Conversation | ConversationText, id: str | None = None
               ) -> Decision:
        """Decide the strategy for the last user turn of `conversation`, within the policy's
        `limits` (raises `BudgetExceeded`, an `InputError`, past them)."""
        text = self.read(conversation)
        with telemetry.span("oyster.decide") as span:
            with self._assess_span(text.messages) as assess, work_budget(self.policy.limits):
                assessment = self.assessor.assess(text.messages)
                _annotate(assess, assessment)
            return _annotated(span, self.decide_assessed(assessment, id, text.ignored))

    async def adecide(self, conversation: Conversation | ConversationText, id: str | None = None
                      ) -> Decision:
        text = self.read(conversation)
        with telemetry.span("oyster.decide") as span:
            # the assessor's worker thread inherits the budget
            with self._assess_span(text.messages) as assess, work_budget(self.policy.limits):
                assessment = await (self.micro_batcher or self.assessor).aassess(text.messages)
                _annotate(assess, assessment)
            return _annotated(span, self.decide_assessed(assessment, id, text.ignored))

    def _assess_span(self, messages: Sequence[Message]) -> Any:
        attributes: dict[str, telemetry.AttributeValue] = {"oyster.turns": len(messages)}
        if self.policy.audit.log_message_text:  # text only where the policy allows it
            attributes["oyster.message"] = next(
                (m.content for m in reversed(messages) if m.role == "user"), "")
        return telemetry.span("oyster.assess", attributes)

    def decide_many(self, conversations: Iterable[Conversation | ConversationText]
                    ) -> list[Decision]:
        """Decide a batch (the assessor may batch its model calls). Each conversation must
        fit the size limits; the batch as a whole has no embedding or time budget."""
        texts = [self.read(c) for c in conversations]
        with telemetry.span("oyster.assess", {"oyster.batch": len(texts)}):
            assessments = self.assessor.assess_many([t.messages for t in texts])
        return [self.decide_assessed(a, ignored=t.ignored)
                for a, t in zip(assessments, texts, strict=True)]

    async def adecide_many(self, conversations: Iterable[Conversation]) -> list[Decision]:
        return list(await asyncio.gather(*(self.adecide(c) for c in conversations)))
