"""Reply texts the policy writes itself: support scaffolds, refusals, fallbacks and the lines
that present help contacts. Part of the policy (the `replies` section, shipped in
`default_replies.yaml` and included by `default_policy.yaml`), so a deployment overrides any
of it in its own policy file like any other policy data:

```yaml
base: default
replies:
  model_refusals: {default: false}         # always send the policy's refusal
  model_scaffold_parts: {default: false}   # in a scaffold's situation, the scaffold alone
  scaffolds:
    self_harm:
      resources:
        en: [{name: Clinic night line, contact: 0800 000 000, region: our patients}]
```

A *scaffold* is what the policy says in a situation where a bad reply costs most (a person
who may end their life, abuse, a medical emergency, an eating disorder, a substance crisis,
a common harmful false belief): a `core` written by us with the facts and the help contacts
for the person's language, around which the model writes the personal parts, an `opening`
and the `alternative` help. Each part has a written default that goes out whenever the
model's part fails verification.
"""

from __future__ import annotations

import re
from functools import cache

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from oyster.types import STRATEGIES, Language, Strategy, UserType

LANGUAGES: tuple[Language, ...] = ("en", "zh")
HELPING_STRATEGIES: tuple[Strategy, ...] = ("answer", "answer_safely", "correct", "guide")

FALLBACK_LANGUAGE = "en"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CrisisResource(_Strict):
    name: str
    contact: str
    region: str


class TermList(_Strict):
    """English regular expressions (case-insensitive, whole words) and Chinese substrings."""

    en: list[str] = Field(default_factory=list)
    zh: list[str] = Field(default_factory=list)

    @field_validator("en")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"bad pattern {p!r}: {e}") from None
        return patterns

    def first_match(self, text: str) -> str | None:
        """The first matching excerpt, or None."""
        for pattern in compiled_terms(tuple(self.en)):
            if m := pattern.search(text):
                return m.group(0)
        return next((s for s in self.zh if s and s in text), None)

    def matches(self, text: str) -> list[str]:
        """Every matching excerpt (one per pattern)."""
        hits = [m.group(0) for p in compiled_terms(tuple(self.en)) if (m := p.search(text))]
        return hits + [s for s in self.zh if s and s in text]


@cache
def compiled_terms(patterns: tuple[str, ...]) -> list[re.Pattern[str]]:
    return [re.compile(rf"(?<!\w){p}(?!\w)", re.I | re.M) for p in patterns]


def _has_fallback(name: str, table: dict[str, object]) -> None:
    if FALLBACK_LANGUAGE not in table:
        raise ValueError(f"{name}: needs the '{FALLBACK_LANGUAGE}' entry (the fallback)")


class ScaffoldText(_Strict):
    """One language's scaffold. `core` may hold `{resources}` (the help contacts, one per
    line); `opening` and `alternative` are the defaults for the parts the model writes."""

    opening: str = Field(min_length=1)
    core: str = Field(min_length=1)
    alternative: str = Field(min_length=1)


class Scaffold(_Strict):
    """A support scaffold and when it applies: the decided strategy is one of `strategies`
    and the person's message matches every group of `cues`, or (with
    `default_for_categories`) the top decided category is one of `categories` (any, when
    empty) and the person is most likely one of `user_types`."""

    description: str
    strategies: list[Strategy] = Field(min_length=1)
    categories: list[str] = Field(default_factory=list)
    user_types: list[UserType] = Field(default_factory=list)
    default_for_categories: bool = False
    cues: list[TermList] = Field(default_factory=list,
                                 description="groups of terms; every group must match")
    crisis_lines: bool = Field(default=False, description="add the policy's crisis lines to "
                                                          "the scaffold's own resources")
    resources: dict[str, list[CrisisResource]] = Field(default_factory=dict)
    text: dict[str, ScaffoldText]

    @model_validator(mode="after")
    def _complete(self) -> Scaffold:
        _has_fallback("text", self.text)  # type: ignore[arg-type]
        if not self.cues and not self.default_for_categories:
            raise ValueError("a scaffold needs cues or default_for_categories (it would never "
                             "apply)")
        for language, text in self.text.items():
            if "{resources}" in text.core and not (self.resources or self.crisis_lines):
                raise ValueError(f"text.{language}.core uses {{resources}} but the scaffold "
                                 "has no resources and crisis_lines is false")
        return self

    def cued_by(self, message: str) -> bool:
        """Whether every cue group matches `message`."""
        return bool(self.cues) and all(g.first_match(message) is not None for g in self.cues)


class ReplyTexts(_Strict):
    """The policy's `replies` section."""

    resource_line: dict[str, str] = Field(description="how one help contact is written; "
                                                      "{name}, {contact}, {region}")
    resource_note: dict[str, str] = Field(description="appended to a guide reply that names "
                                                      "no help contact; {resources}")
    guide_not_at_risk: dict[str, str] = Field(
        description="the `guide` fallback for a person who is probably not at risk "
                    "themselves (no crisis lines: they would read as a misunderstanding)")
    fallbacks: dict[str, dict[Strategy, str]] = Field(
        description="the reply per strategy when the model's fails twice; the `refuse` text "
                    "is also the policy's refusal; {resources}, {alternative}")
    refusal_alternatives: dict[str, dict[str, str]] = Field(
        description="the safe alternative a refusal offers, by category id or group "
                    "(`default` for the rest), by language")
    model_refusals: dict[str, bool] = Field(
        description="by backend kind (`default` for the rest): whether the model writes the "
                    "refusal; false sends the policy's refusal without generating")
    model_scaffold_parts: dict[str, bool] = Field(
        default_factory=lambda: {"default": True},
        description="by backend kind (`default` for the rest): whether the model writes where "
                    "a support scaffold applies (its own reply, or the opening and alternative "
                    "around the scaffold's core); false sends the scaffold alone without "
                    "generating")
    model_strategies: dict[str, list[Strategy]] = Field(
        default_factory=lambda: {"default": list(HELPING_STRATEGIES)},
        description="by backend kind (`default` for the rest): the helping strategies whose "
                    "replies the model writes; for the others the policy's texts go out "
                    "without generating (`refuse` is `model_refusals`)")
    model_languages: dict[str, list[Language]] = Field(
        default_factory=lambda: {"default": list(LANGUAGES)},
        description="by backend kind (`default` for the rest): the languages the model writes "
                    "well enough to send; in any other, the policy's texts go out without "
                    "generating (`unwritten_language` for answer and answer_safely)")
    unwritten_language: dict[str, str] = Field(
        default_factory=dict, description="the reply to an answer or answer_safely decision "
        "in a language the backend does not write, by language")
    scaffolds: dict[str, Scaffold] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> ReplyTexts:
        for name in ("resource_line", "resource_note", "fallbacks", "guide_not_at_risk"):
            _has_fallback(name, getattr(self, name))
        for language, by_strategy in self.fallbacks.items():
            missing = [s for s in STRATEGIES if s not in by_strategy]
            if missing:
                raise ValueError(f"fallbacks.{language}: no reply for {missing}")
        if "default" not in self.refusal_alternatives:
            raise ValueError("refusal_alternatives: needs a 'default' entry")
        for key, table in self.refusal_alternatives.items():
            _has_fallback(f"refusal_alternatives.{key}", table)  # type: ignore[arg-type]
        for name in ("model_refusals", "model_scaffold_parts", "model_strategies",
                     "model_languages"):
            if "default" not in getattr(self, name):
                raise ValueError(f"{name}: needs a 'default' entry")
        written = [set(langs) for langs in self.model_languages.values()]
        untold = sorted({lang for langs in written for lang in set(LANGUAGES) - langs}
                        - set(self.unwritten_language))
        if untold:
            raise ValueError(f"unwritten_language: no text for {untold}, which some backend "
                             "kind does not write (model_languages)")
        return self

    def model_writes_refusals(self, backend_kind: str) -> bool:
        return self.model_refusals.get(backend_kind, self.model_refusals["default"])

    def model_writes_strategy(self, backend_kind: str, strategy: str) -> bool:
        if strategy == "refuse":
            return self.model_writes_refusals(backend_kind)
        return strategy in self.model_strategies.get(backend_kind,
                                                     self.model_strategies["default"])

    def model_writes_language(self, backend_kind: str, language: str) -> bool:
        return language in self.model_languages.get(backend_kind,
                                                     self.model_languages["default"])

    def model_writes_scaffold_parts(self, backend_kind: str) -> bool:
        return self.model_scaffold_parts.get(backend_kind, self.model_scaffold_parts["default"])
