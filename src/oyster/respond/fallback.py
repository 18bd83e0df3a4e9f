"""Safe replies written in advance, one per strategy and language (`fallbacks.yaml`), used
when generation fails verification twice; and the crisis-resource lines both the fallback
and a repaired `guide` reply carry."""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from oyster.decision import Decision
from oyster.errors import PolicyError
from oyster.taxonomy.policy import CrisisResource, Policy
from oyster.types import STRATEGIES, Strategy

FALLBACK_LANGUAGE = "en"


class FallbackTemplates(BaseModel):
    """The contents of `fallbacks.yaml`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource_line: dict[str, str]
    resource_note: dict[str, str]
    replies: dict[str, dict[Strategy, str]]

    @model_validator(mode="after")
    def _complete(self) -> FallbackTemplates:
        for name, table in (("resource_line", self.resource_line),
                            ("resource_note", self.resource_note), ("replies", self.replies)):
            if FALLBACK_LANGUAGE not in table:
                raise ValueError(f"{name}: needs the '{FALLBACK_LANGUAGE}' entry (the fallback)")
        for language, by_strategy in self.replies.items():
            missing = [s for s in STRATEGIES if s not in by_strategy]
            if missing:
                raise ValueError(f"replies.{language}: no reply for {missing}")
        return self


@cache
def fallback_templates() -> FallbackTemplates:
    text = resources.files("oyster.respond").joinpath("fallbacks.yaml").read_text("utf-8")
    try:
        return FallbackTemplates.model_validate(yaml.safe_load(text))
    except ValidationError as e:
        raise PolicyError(f"fallbacks.yaml: invalid templates: {e}") from None


def crisis_resources(policy: Policy, language: str) -> list[CrisisResource]:
    """The policy's crisis resources for `language`, else its English ones."""
    return policy.resources.crisis.get(language) or policy.resources.crisis[FALLBACK_LANGUAGE]


def _pick(table: dict[str, str], language: str) -> str:
    return table.get(language, table[FALLBACK_LANGUAGE])


def format_resources(policy: Policy, language: str) -> str:
    """The crisis resources as lines for a reply in `language`."""
    line = _pick(fallback_templates().resource_line, language)
    return "\n".join(line.format(name=r.name, contact=r.contact, region=r.region)
                     for r in crisis_resources(policy, language))


def resource_note(policy: Policy, language: str) -> str:
    """A short paragraph that points to the crisis resources."""
    note = _pick(fallback_templates().resource_note, language)
    return note.format(resources=format_resources(policy, language))


def fallback_reply(decision: Decision, policy: Policy, strategy: Strategy | None = None) -> str:
    """The safe reply for `strategy` (default: the decided one) in the user's language."""
    templates = fallback_templates()
    by_strategy = templates.replies.get(decision.language, templates.replies[FALLBACK_LANGUAGE])
    template = by_strategy[strategy or decision.strategy]
    return template.format(resources=format_resources(policy, decision.language)).strip()
