"""The engine: messages → assessment → belief → game → chain → decision."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from oyster import telemetry
from oyster.assess import from_spec as assessor_from_spec
from oyster.assess.base import Assessment, Assessor, CategoryScore
from oyster.chain import build_chain
from oyster.decision import Decision
from oyster.errors import InputError
from oyster.game import TypeEvidence, choose_strategy, posterior_over_types
from oyster.taxonomy.policy import NONE_CATEGORY, Policy, load_policy
from oyster.types import Level, Message

Conversation = Sequence[Message | dict[str, Any]] | str

DEFAULT_ASSESSOR = "default"


def to_messages(conversation: Conversation) -> list[Message]:
    """Accept a prompt string or OpenAI-style messages; raise `InputError` on anything else."""
    if isinstance(conversation, str):
        conversation = [{"role": "user", "content": conversation}]
    if not isinstance(conversation, Sequence) or not conversation:
        raise InputError("messages must be a non-empty list of {role, content} objects")
    out: list[Message] = []
    for i, m in enumerate(conversation):
        if isinstance(m, Message):
            out.append(m)
            continue
        if not isinstance(m, dict):
            raise InputError(f"messages[{i}] must be an object with 'role' and 'content'")
        content = m.get("content")
        if isinstance(content, list):  # OpenAI content parts: keep the text parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        try:
            out.append(Message(role=m.get("role"), content=content))  # type: ignore[arg-type]
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise InputError(f"messages[{i}].{field}: {err['msg']}") from None
    if not any(m.role == "user" and m.content.strip() for m in out):
        raise InputError("the conversation has no non-empty user message")
    return out


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

    def severity(self, assessment: Assessment) -> float:
        """The harm weight of this turn: the worst score-weighted category severity."""
        return severity_of(self.policy, assessment.categories, assessment.level)

    def decide_assessed(self, assessment: Assessment, id: str | None = None) -> Decision:
        """The game and the chain on an assessment already made."""
        policy = self.policy
        with telemetry.span("oyster.game") as span:
            evidence = [TypeEvidence(likelihood=t.type_evidence,
                                     repeats_refused_ask=t.repeats_refused_ask)
                        for t in assessment.turns]
            posterior = posterior_over_types(policy.game, evidence)
            choice = choose_strategy(policy.game, policy.strategies, posterior,
                                     self.severity(assessment), assessment.level)
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
            assessment=assessment,
        )

    def decide(self, conversation: Conversation, id: str | None = None) -> Decision:
        """Decide the strategy for the last user turn of `conversation`."""
        messages = to_messages(conversation)
        with telemetry.span("oyster.decide") as span:
            with self._assess_span(messages) as assess:
                assessment = self.assessor.assess(messages)
                _annotate(assess, assessment)
            return _annotated(span, self.decide_assessed(assessment, id))

    async def adecide(self, conversation: Conversation, id: str | None = None) -> Decision:
        messages = to_messages(conversation)
        with telemetry.span("oyster.decide") as span:
            with self._assess_span(messages) as assess:
                assessment = await self.assessor.aassess(messages)
                _annotate(assess, assessment)
            return _annotated(span, self.decide_assessed(assessment, id))

    def _assess_span(self, messages: Sequence[Message]) -> Any:
        attributes: dict[str, telemetry.AttributeValue] = {"oyster.turns": len(messages)}
        if self.policy.audit.log_message_text:  # text only where the policy allows it
            attributes["oyster.message"] = next(
                (m.content for m in reversed(messages) if m.role == "user"), "")
        return telemetry.span("oyster.assess", attributes)

    def decide_many(self, conversations: Iterable[Conversation]) -> list[Decision]:
        """Decide a batch (the assessor may batch its model calls)."""
        batch = [to_messages(c) for c in conversations]
        with telemetry.span("oyster.assess", {"oyster.batch": len(batch)}):
            assessments = self.assessor.assess_many(batch)
        return [self.decide_assessed(a) for a in assessments]

    async def adecide_many(self, conversations: Iterable[Conversation]) -> list[Decision]:
        return list(await asyncio.gather(*(self.adecide(c) for c in conversations)))
