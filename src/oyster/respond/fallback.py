"""Replies the policy writes itself (the policy's `replies` section): the fallback per
strategy when generation fails verification twice, the refusal, and the lines that present
help contacts, which the fallback, a repaired `guide` reply and the scaffolds carry."""

from __future__ import annotations

from oyster.decision import Decision
from oyster.taxonomy.policy import CrisisResource, Policy
from oyster.taxonomy.replies import FALLBACK_LANGUAGE
from oyster.types import Strategy


def crisis_resources(policy: Policy, language: str) -> list[CrisisResource]:
    """The policy's crisis resources for `language`, else its English ones."""
    return policy.resources.crisis.get(language) or policy.resources.crisis[FALLBACK_LANGUAGE]


def _pick(table: dict[str, str], language: str) -> str:
    return table.get(language, table[FALLBACK_LANGUAGE])


def format_resources(policy: Policy, language: str,
                     resources: list[CrisisResource] | None = None) -> str:
    """Help contacts (default: the crisis lines) as lines for a reply in `language`."""
    line = _pick(policy.replies.resource_line, language)
    chosen = crisis_resources(policy, language) if resources is None else resources
    return "\n".join(line.format(name=r.name, contact=r.contact, region=r.region)
                     for r in chosen)


def resource_note(policy: Policy, language: str) -> str:
    """A short paragraph that points to the crisis resources."""
    note = _pick(policy.replies.resource_note, language)
    return note.format(resources=format_resources(policy, language))


def refusal_alternative(decision: Decision, policy: Policy) -> str:
    """The safe alternative a refusal offers: for the top category, else its group, else
    the default."""
    table = policy.replies.refusal_alternatives
    for c in decision.categories:
        if not policy.has_category(c.id):
            continue
        category = policy.category(c.id)
        for key in (category.id, category.group):
            if key in table:
                return _pick(table[key], decision.language)
    return _pick(table["default"], decision.language)


def fallback_reply(decision: Decision, policy: Policy, strategy: Strategy | None = None, *,
                   at_risk: bool = True) -> str:
    """The policy's reply for `strategy` (default: the decided one) in the user's language;
    for `refuse`, the policy's refusal; for `guide` to a person not `at_risk` themselves
    (`Verifier.needs_resource`), the one without crisis lines."""
    replies = policy.replies.fallbacks
    by_strategy = replies.get(decision.language, replies[FALLBACK_LANGUAGE])
    chosen = strategy or decision.strategy
    template = (_pick(policy.replies.guide_not_at_risk, decision.language)
                if chosen == "guide" and not at_risk else by_strategy[chosen])
    return template.format(resources=format_resources(policy, decision.language),
                           alternative=refusal_alternative(decision, policy)).strip()


def policy_reply_texts(policy: Policy, language: str) -> list[str]:
    """Every text the policy itself may send in `language` (a reply may repeat these)."""
    replies = policy.replies
    texts = [format_resources(policy, language), _pick(replies.resource_note, language),
             *replies.fallbacks.get(language, replies.fallbacks[FALLBACK_LANGUAGE]).values(),
             _pick(replies.guide_not_at_risk, language)]
    if language in replies.unwritten_language:
        texts.append(replies.unwritten_language[language])
    for scaffold in replies.scaffolds.values():
        text = scaffold.text.get(language) or scaffold.text[FALLBACK_LANGUAGE]
        texts += [text.opening, text.core, text.alternative]
        texts.append(format_resources(policy, language, scaffold.resources.get(language, [])))
    return texts
