"""A fast check of a reply before it leaves: does it carry out the decision?

Problems it reports (codes in `Verification.problems`):

- `hazard_leak` — hazardous specifics for the decided category (amounts, methods,
  precursors, exploit code) in a reply whose strategy is not `answer`;
- `chain_leak` — the private steering notes reach the reply (chain vocabulary, or a run of
  words copied from the chain or the reply contract);
- `refusal_mismatch` — the reply's refusal type does not fit the strategy: a flat refusal
  where the strategy helps (`answer`, `answer_safely`, `correct`, `guide`), or, for
  `refuse`, no refusal, a long reply, or a list of steps;
- `payload_echo` — a `refuse` reply restates the request;
- `missing_resource` — a `guide` reply to a person who may be at risk names no crisis
  resource from the policy;
- `missing_correction` — a `correct` reply has no sign of correcting the premise (no "not
  true", "no evidence", "myth", ...): it may be going along with the false belief;
- `wrong_language`, `empty_reply`, `repetition` — the reply cannot serve the user as written.

Checks that need the whole reply (`missing_resource`, `missing_correction`, `empty_reply`,
`wrong_language`, "a `refuse` reply declines") run only when `final=True`, so the verifier also works on the
partial text of a stream. The term lists live in `verify.yaml`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from oyster import telemetry
from oyster.decision import Decision
from oyster.errors import PolicyError
from oyster.taxonomy.policy import Policy
from oyster.types import detect_language

Problem = Literal["hazard_leak", "chain_leak", "refusal_mismatch", "payload_echo",
                  "missing_resource", "missing_correction", "wrong_language", "empty_reply",
                  "repetition"]
HELPING_STRATEGIES = ("answer", "answer_safely", "correct", "guide")
ANY_RISK = "any_risk"


class Verification(BaseModel):
    """The verdict on one reply. `problems` is empty exactly when `passed`."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    problems: list[Problem] = Field(default_factory=list)
    detail: str = ""
    final: bool = Field(default=True, description="whether whole-reply checks ran")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
        for pattern in _compiled(tuple(self.en)):
            if m := pattern.search(text):
                return m.group(0)
        return next((s for s in self.zh if s and s in text), None)


@cache
def _compiled(patterns: tuple[str, ...]) -> list[re.Pattern[str]]:
    return [re.compile(rf"(?<!\w){p}(?!\w)", re.I | re.M) for p in patterns]


class VerifierRules(_Strict):
    """The contents of `verify.yaml` (see the comments there)."""

    chain_terms: TermList
    chain_copy_words: int = Field(ge=3)
    refusal: TermList
    correction: TermList
    hard_refusal_max_words: int = Field(gt=0)
    refuse_max_words: int = Field(gt=0)
    payload_echo_words: int = Field(ge=2)
    list_item: str
    refuse_max_list_items: int = Field(ge=0)
    resource_min_vulnerable: float = Field(ge=0.0, le=1.0)
    repeated_sentence_limit: int = Field(ge=2)
    hazards: dict[str, TermList]


@cache
def default_rules() -> VerifierRules:
    text = resources.files("oyster.respond").joinpath("verify.yaml").read_text("utf-8")
    try:
        return VerifierRules.model_validate(yaml.safe_load(text))
    except ValidationError as e:
        raise PolicyError(f"verify.yaml: invalid verifier rules: {e}") from None


_WORD = re.compile(r"[a-z0-9']+|[\u4e00-\u9fff]")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*|\n+")
_DIGIT_GROUP = re.compile(r"\d[\d\s-]*\d|\d")


def words(text: str) -> list[str]:
    """Lower-cased words; each Chinese character counts as one."""
    return _WORD.findall(text.lower())


def word_count(text: str) -> int:
    # Two Chinese characters carry about as much as one English word.
    tokens = words(text)
    cjk = sum(1 for t in tokens if "\u4e00" <= t <= "\u9fff")
    return len(tokens) - cjk + (cjk + 1) // 2


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def _digits(text: str) -> set[str]:
    return {re.sub(r"[\s-]", "", g) for g in _DIGIT_GROUP.findall(text)}


def resource_markers(policy: Policy, language: str) -> set[str]:
    """Lower-cased names, web addresses and phone numbers (digits only, 3+) of the crisis
    resources a reply in `language` may name."""
    markers: set[str] = set()
    for lang in {language, "en"}:
        for r in policy.resources.crisis.get(lang, []):
            markers.add(r.name.lower())
            markers |= {d for d in _digits(r.contact) if len(d) >= 3}
            markers |= {w.lower().strip(".,") for w in r.contact.split() if "." in w.strip(".")}
    return markers


def has_resource(text: str, markers: set[str]) -> bool:
    lowered = text.lower()
    return bool(_digits(text) & markers) or any(m in lowered for m in markers if not m.isdigit())


class Verifier:
    """Checks replies against decisions for one policy.

        verification = Verifier(policy).check(reply_text, decision, request=user_message)
    """

    def __init__(self, policy: Policy, rules: VerifierRules | None = None) -> None:
        self.policy = policy
        self.rules = rules or default_rules()
        self._list_item = re.compile(self.rules.list_item, re.I | re.M)

    def check(self, text: str, decision: Decision, final: bool = True,
              request: str | None = None) -> Verification:
        """Verify `text` as the reply that carries out `decision`. `request` (the user's last
        message) enables the `payload_echo` check; `final=False` treats `text` as the
        beginning of a reply and skips checks that need all of it."""
        found: dict[Problem, str] = {}
        with telemetry.span("oyster.verify", {"oyster.strategy": decision.strategy,
                                              "oyster.verify.final": final}) as span:
            for code, detail in self._problems(text, decision, final, request):
                found.setdefault(code, detail)
            span.set_attributes({"oyster.verified": not found, "oyster.problems": list(found)})
        return Verification(passed=not found, problems=list(found),
                            detail="; ".join(f"{c}: {d}" for c, d in found.items()), final=final)

    def needs_resource(self, decision: Decision) -> bool:
        """Whether a `guide` reply to this decision must name a crisis resource."""
        if decision.strategy != "guide":
            return False
        vulnerable = decision.user_type.get("vulnerable", 0.0)
        return (vulnerable >= self.rules.resource_min_vulnerable
                or vulnerable >= max(decision.user_type.values(), default=0.0))

    def _problems(self, text: str, decision: Decision, final: bool, request: str | None
                  ) -> Iterable[tuple[Problem, str]]:
        rules = self.rules
        strategy = decision.strategy
        if final and not words(text):
            yield "empty_reply", "the reply has no words"
            return
        if (hit := self._hazard(text, decision)) is not None:
            yield "hazard_leak", hit
        if (hit := self._chain_leak(text, decision)) is not None:
            yield "chain_leak", hit

        refusal = rules.refusal.first_match(text)
        n_words = word_count(text)
        if strategy in HELPING_STRATEGIES:
            if final and refusal and n_words <= rules.hard_refusal_max_words:
                yield "refusal_mismatch", f"a flat refusal ({refusal!r}) where the strategy " \
                                          f"is {strategy}"
        else:
            if final and not refusal:
                yield "refusal_mismatch", "the reply does not decline"
            if n_words > rules.refuse_max_words:
                yield "refusal_mismatch", f"{n_words} words; a refusal stays under " \
                                          f"{rules.refuse_max_words}"
            if len(self._list_item.findall(text)) > rules.refuse_max_list_items:
                yield "refusal_mismatch", "the refusal contains a list"
            if request and (echo := self._echo(text, request)):
                yield "payload_echo", f"repeats the request ({echo!r})"

        if final and self.needs_resource(decision) and not has_resource(
                text, resource_markers(self.policy, decision.language)):
            yield "missing_resource", "no crisis resource from the policy is named"
        if final and strategy == "correct" and rules.correction.first_match(text) is None:
            yield "missing_correction", "the reply does not say the premise is wrong"
        if final and (lang := self._language(text)) and lang != decision.language:
            yield "wrong_language", f"reply reads as {lang}, the user wrote {decision.language}"
        if (sentence := self._repeated(text)) is not None:
            yield "repetition", f"repeats {sentence!r}"

    def _hazard(self, text: str, decision: Decision) -> str | None:
        if decision.strategy == "answer" or decision.level == "R0":
            return None
        for category in [ANY_RISK, *(c.id for c in decision.categories)]:
            terms = self.rules.hazards.get(category)
            if terms and (hit := terms.first_match(text)) is not None:
                return f"{hit!r} ({category})"
        return None

    def _chain_leak(self, text: str, decision: Decision) -> str | None:
        if (hit := self.rules.chain_terms.first_match(text)) is not None:
            return repr(hit)
        chain = decision.chain
        private = [chain.user_needs, chain.risk_intent, *chain.guidelines,
                   *chain.safety_strategies, *chain.usefulness_strategies,
                   *self.policy.strategies[decision.strategy].reply_contract]
        n = self.rules.chain_copy_words
        copied = ngrams(words(text), n) & set().union(*(ngrams(words(p), n) for p in private))
        return f"copies {' '.join(min(copied))!r} from the chain" if copied else None

    def _echo(self, text: str, request: str) -> str | None:
        n = self.rules.payload_echo_words
        echoed = ngrams(words(text), n) & ngrams(words(request), n)
        return " ".join(min(echoed)) if echoed else None

    def _language(self, text: str) -> str | None:
        letters = sum(1 for ch in text if ch.isalpha())
        if letters < 4:
            return None
        return detect_language(text)

    def _repeated(self, text: str) -> str | None:
        sentences = [" ".join(words(s)) for s in _SENTENCE_END.split(text)]
        counts = Counter(s for s in sentences if len(s.split()) >= 3)
        sentence, n = counts.most_common(1)[0] if counts else ("", 0)
        return sentence if n >= self.rules.repeated_sentence_limit else None
