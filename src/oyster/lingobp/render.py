"""A chain and a conversation as plain text: for the LLM steps' prompts and for the
assistant's reasoning in exported training data (headings from `data/lingobp.yaml`)."""

from __future__ import annotations

from collections.abc import Sequence

from oyster.chain import Chain
from oyster.lingobp.settings import settings
from oyster.types import Message


def chain_text(chain: Chain) -> str:
    """The five nodes in order; empty nodes (an R0 chain's risk and guidelines) left out."""
    fmt = settings().reasoning
    lines = [fmt.user_needs.format(text=chain.user_needs)]
    if chain.risk_intent:
        lines.append(fmt.risk_intent.format(text=chain.risk_intent))
    for heading, items in ((fmt.guidelines, chain.guidelines),
                           (fmt.safety_strategies, chain.safety_strategies),
                           (fmt.usefulness_strategies, chain.usefulness_strategies)):
        if items:
            lines.append(heading)
            lines += [fmt.item.format(text=t) for t in items]
    return "\n".join(lines)


def conversation_text(messages: Sequence[Message]) -> str:
    return "\n".join(f"[{m.role}] {m.content}" for m in messages)
