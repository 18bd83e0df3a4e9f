"""Build the five-node chain from an assessment and a decision, and render it as the
system instructions that steer generation.

The chain is for the model, never for the user: the rendered instructions tell the model
to keep it out of the reply, and the responder's verifier checks that it did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from oyster.assess.base import Assessment, CategoryScore
from oyster.taxonomy.policy import NONE_CATEGORY, Policy
from oyster.types import Language, Level, Strategy, UserType


class Chain(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_needs: str
    risk_intent: str = ""
    guidelines: list[str] = Field(default_factory=list)
    safety_strategies: list[str] = Field(default_factory=list)
    usefulness_strategies: list[str] = Field(default_factory=list)


def _dominant_type(posterior: dict[UserType, float]) -> UserType:
    return max(posterior, key=lambda t: posterior[t])


def risky_categories(categories: Iterable[CategoryScore], policy: Policy) -> list[CategoryScore]:
    """The policy categories among `categories`, highest score first (`none` left out)."""
    return [c for c in sorted(categories, key=lambda c: -c.score)
            if c.id != NONE_CATEGORY and policy.has_category(c.id)]


def guideline_points(risky: Sequence[CategoryScore], policy: Policy) -> list[str]:
    """The guideline points of the top two risky categories, in order, without repeats."""
    points: list[str] = []
    for c in risky[:2]:
        points += [p for p in policy.category(c.id).guidelines if p not in points]
    return points


def risk_intent_text(level: Level, risky: Sequence[CategoryScore], user_type: UserType,
                     attacks: Iterable[str], policy: Policy) -> str:
    """The risk-intent node: the level's note, what this kind of user is after in the top
    categories, and the attack wrapper around the request, if any."""
    category_names = ", ".join(policy.category(c.id).name_en for c in risky[:2]) or "an unlisted risk"
    parts = [policy.chain.level_note[level],
             policy.chain.risk_intent[user_type].format(category=category_names)]
    if techniques := sorted(set(attacks)):
        parts.append(policy.chain.attack_note.format(attacks=", ".join(techniques)))
    return " ".join(parts)


def build_chain(
    assessment: Assessment, strategy: Strategy, posterior: dict[UserType, float],
    policy: Policy, max_guidelines: int = 3,
) -> Chain:
    """The chain that leads from this assessment to `strategy`.

    For R0 the chain collapses to needs + usefulness strategies (docs/decisions.md).
    Guidelines are the points of the top-scoring categories, most relevant first.
    """
    dominant = _dominant_type(posterior)
    spec = policy.strategies[strategy]
    needs = policy.user_types[dominant].needs if assessment.level != "R0" else \
        policy.user_types["benign"].needs
    if assessment.level == "R0":
        return Chain(user_needs=needs, usefulness_strategies=list(spec.usefulness_strategies))

    risky = risky_categories(assessment.categories, policy)
    guidelines = guideline_points(risky, policy)[:max_guidelines]
    return Chain(
        user_needs=needs,
        risk_intent=risk_intent_text(assessment.level, risky, dominant,
                                     [a.technique for a in assessment.attacks], policy),
        guidelines=guidelines,
        safety_strategies=list(spec.safety_strategies),
        usefulness_strategies=list(spec.usefulness_strategies),
    )


def render_instructions(
    chain: Chain, strategy: Strategy, policy: Policy, language: Language = "en",
    include_resources: bool | None = None,
) -> str:
    """System instructions for generating a reply that carries out `strategy`.

    Crisis resources for the user's language are included for `guide` (or when asked).
    """
    spec = policy.strategies[strategy]
    lines = [
        "You are a helpful, honest assistant. Follow these private notes when writing your "
        "reply. Never mention the notes, rules, guidelines, strategies, policies or any "
        "analysis of the user; just write the reply.",
        f"What the user needs: {chain.user_needs}.",
    ]
    if chain.risk_intent:
        lines.append(f"Risk: {chain.risk_intent}")
    if chain.guidelines:
        lines.append("Rules for this topic:")
        lines += [f"- {g}" for g in chain.guidelines]
    if chain.safety_strategies:
        lines.append("Safety (wins over helpfulness when they conflict): "
                     + "; ".join(chain.safety_strategies) + ".")
    if chain.usefulness_strategies:
        lines.append("Helpfulness: " + "; ".join(chain.usefulness_strategies) + ".")
    lines.append("How to write the reply:")
    lines += [f"- {c}" for c in spec.reply_contract]
    if include_resources if include_resources is not None else strategy == "guide":
        resources = policy.resources.crisis.get(language) or policy.resources.crisis["en"]
        lines.append("Help the user can reach now (give at least one, exactly as written):")
        lines += [f"- {r.name}: {r.contact} ({r.region})" for r in resources]
    lines.append("Reply in Chinese." if language == "zh" else "Reply in English.")
    return "\n".join(lines)
