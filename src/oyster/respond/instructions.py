"""The decision's chain, rendered as the system instructions in front of the conversation."""

from __future__ import annotations

from collections.abc import Sequence

from oyster.chain import render_instructions
from oyster.decision import Decision
from oyster.policy import Policy
from oyster.respond.regenerate import regeneration_rules
from oyster.types import Message, Strategy


def instructions_for(decision: Decision, policy: Policy, messages: Sequence[Message] = (), *,
                     corrections: Sequence[str] = (), include_resources: bool | None = None
                     ) -> list[Message]:
    """Our system message (the rendered chain, plus `corrections` for a regeneration),
    followed by the conversation. A system message of the caller's is kept, after ours."""
    text = render_instructions(decision.chain, decision.strategy, policy, decision.language,
                               include_resources=include_resources)
    if corrections:
        text += "\n" + "\n".join([regeneration_rules().corrections_heading,
                                  *(f"- {c}" for c in corrections)])
    return [Message(role="system", content=text), *messages]


def with_strategy(decision: Decision, strategy: Strategy, policy: Policy) -> Decision:
    """The same decision carried out with another strategy: the chain keeps its needs, risk
    and guidelines and takes that strategy's safety and usefulness strategies."""
    if strategy == decision.strategy:
        return decision
    spec = policy.strategies[strategy]
    chain = decision.chain.model_copy(update={
        "safety_strategies": list(spec.safety_strategies),
        "usefulness_strategies": list(spec.usefulness_strategies)})
    return decision.model_copy(update={"strategy": strategy, "chain": chain})
