"""A fast check of a reply before it leaves: does it carry out the decision?

Problems it reports (codes in `Verification.problems`):

- `hazard_leak` — the reply, read as text in its own right by the moderator
  (`oyster.moderate`: harm across the taxonomy, self-harm encouragement, hate, private data),
  is harmful at the strictness the decision sets; or, when the strategy is not `answer`,
  it carries hazardous specifics for the decided category (amounts, methods, precursors,
  exploit code);
- `chain_leak` — the private instructions reach the reply: chain vocabulary, or a run of
  words copied from any private text of the call (the rendered system prompt actually sent,
  regeneration corrections, the chain, reply contracts, resource block labels) that is not
  also in what the reply may repeat (the person's words, the policy's help contacts and
  scaffolds);
- `meta_talk` — the reply speaks *about* the conversation instead of *to* the person ("the
  user feels", "the assistant should", "as instructed", "the contacts listed above" with no
  list above, 用户/助手 in that role);
- `off_topic` — the reply, or one of its sentences, is not about what the person said or
  needs (embedding margin over a bank of unrelated messages, `coherence.py`);
- `empty_apology` — a `guide` or `correct` reply opens by apologising for itself ("I'm
  sorry, I'll keep it short") instead of turning to the person;
- `unknown_contact` — a `guide` reply gives a phone number the policy does not list and the
  person did not give (a made-up helpline);
- `refusal_mismatch` — the reply's refusal type does not fit the strategy: a flat refusal
  where the strategy helps (`answer`, `answer_safely`, `correct`, `guide`), or, for
  `refuse`, no refusal, a long reply, or a list of steps;
- `payload_echo` — a `refuse` reply restates the request;
- `missing_resource` — a `guide` reply to a person who may be at risk names no crisis
  resource from the policy;
- `missing_correction` — a `correct` reply has no sign of correcting the premise (no "not
  true", "no evidence", "myth", ...), or opens by agreeing with it ("Yes", "是的");
- `wrong_language` (the reply, or a sentence of it, is in another language), `empty_reply`,
  `repetition` — the reply cannot serve the user as written.

Checks that need the whole reply (`missing_resource`, `missing_correction`, `empty_reply`,
`wrong_language`, "a `refuse` reply declines", the whole-reply relevance) run only when
`final=True`, so the verifier also works on the partial text of a stream: on a window, the
leak, meta-talk and hazard checks run on all of it and the apology check once the first
sentence is finished. The relevance check embeds text, so `check` runs it on the whole
reply only (it adds tens of milliseconds per reply on two cores); a stream that wants it
per window calls `off_topic(window, decision, said, final=False)`, which judges the
window's finished sentences. The term lists live in `verify.yaml`.

    v = Verifier(policy)
    v.check(reply, decision, request=last_user_message,
            private=[system_prompt_sent], conversation=messages)      # a whole reply
    v.check(window, decision, final=False, private=[...], conversation=messages)  # a stream

"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence, Set
from functools import cache, lru_cache
from itertools import accumulate
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oyster import telemetry
from oyster._packaged import packaged_model, packaged_path
from oyster.decision import Decision
from oyster.errors import PolicyError
from oyster.moderate import Moderator
from oyster.policy import Policy
from oyster.policy.replies import (
    HELPING_STRATEGIES,
    CrisisResource,
    TermList,
    compiled_terms,
)
from oyster.respond.coherence import RelevanceScorer, split_sentences
from oyster.types import Message, Problem, Strategy, detect_language

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


class RelevanceRules(_Strict):
    embedder: str
    calibration: str = Field(description="calibration file in oyster.respond")
    min_sentence_words: float = Field(gt=0)
    min_reply_words: float = Field(gt=0)
    generic: dict[Strategy, list[str]]


class RelevanceCalibration(BaseModel):
    """What scripts/calibrate_reply_checks.py wrote: the score kind chosen (`margin` over
    the bank's mean similarity, or `z`: that margin over the spread), thresholds per
    language, and the bank file (embeddings of unrelated messages per language)."""

    embedder: str
    score: Literal["margin", "z"]
    thresholds: dict[str, dict[Literal["reply", "sentence"], float]]
    bank_file: str


class CorrectionRules(_Strict):
    """How a `correct` reply says the belief is wrong (`verify.yaml`, `correction`)."""

    says_wrong: TermList
    negation: TermList
    not_negation: TermList
    claims: TermList
    scope_words: int = Field(ge=1)
    scope_chars: int = Field(ge=1)
    scope_before_chars: int = Field(ge=0)


class VerifierRules(_Strict):
    """The contents of `verify.yaml` (see the comments there)."""

    chain_terms: TermList
    chain_copy_words: int = Field(ge=3)
    chain_copy_chars: int = Field(ge=4)
    affirms_premise: TermList
    contact_min_digits: int = Field(ge=3)
    meta_talk: TermList
    user_talk: TermList
    refers_above: TermList
    apology: TermList
    self_apology: TermList
    to_person: TermList
    sympathy: TermList
    relevance: RelevanceRules
    refusal: TermList
    correction: CorrectionRules
    hard_refusal_max_words: int = Field(gt=0)
    refuse_max_words: int = Field(gt=0)
    payload_echo_words: int = Field(ge=2)
    list_item: str
    refuse_max_list_items: int = Field(ge=0)
    resource_min_vulnerable: float = Field(ge=0.0, le=1.0)
    repeated_sentence_limit: int = Field(ge=2)
    prose_markers: TermList
    min_prose_markers: int = Field(ge=1)
    hazards: dict[str, TermList]


# what `Verifier.warm_up` reads as a reply (its embedding stays in the cache, harmlessly)
WARM_UP_REPLY = "Open the router's settings page, sign in and choose a new password."


@cache
def default_rules() -> VerifierRules:
    return packaged_model("oyster.respond", "verify.yaml", VerifierRules)


@cache
def relevance_calibration(name: str) -> RelevanceCalibration | None:
    """The calibration file, or None when it has not been written yet (the relevance check
    is then off)."""
    path = packaged_path("oyster.respond", name)
    if not path.is_file():
        return None
    try:
        return RelevanceCalibration.model_validate_json(path.read_text("utf-8"))
    except ValidationError as e:
        raise PolicyError(f"{name}: invalid relevance calibration: {e}") from None


@cache
def relevance_bank(name: str, language: str) -> np.ndarray:
    """The bank's embeddings for `language` (rows, float32)."""
    with packaged_path("oyster.respond", name).open("rb") as f:
        return np.asarray(np.load(f)[language], dtype=np.float32)


_WORD = re.compile(r"[a-z0-9']+|[\u4e00-\u9fff]")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*|\n+")
_DIGIT_GROUP = re.compile(r"\d[\d\s-]*\d|\d")
_PHONE_LIKE = re.compile(r"\+?\d[\d\s().-]{3,}\d")


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


def policy_resources(policy: Policy, language: str) -> list[CrisisResource]:
    """Every help contact the policy gives for `language` (and English): its crisis lines
    and its scaffolds' resources."""
    found: list[CrisisResource] = []
    for lang in dict.fromkeys([language, "en"]):
        found += policy.resources.crisis.get(lang, [])
        for scaffold in policy.replies.scaffolds.values():
            found += scaffold.resources.get(lang, [])
    return found


def resource_markers(policy: Policy, language: str) -> set[str]:
    """Lower-cased names, web addresses and phone numbers (digits only, 3+) of the help
    contacts a reply in `language` may name."""
    markers: set[str] = set()
    for r in policy_resources(policy, language):
        markers.add(r.name.lower())
        markers |= {d for d in _digits(r.contact) if len(d) >= 3}
        markers |= {w.lower().strip(".,") for w in r.contact.split() if "." in w.strip(".")}
    return markers


def has_resource(text: str, markers: Set[str]) -> bool:
    lowered = text.lower()
    return bool(_digits(text) & markers) or any(m in lowered for m in markers if not m.isdigit())


def _is_cjk(token: str) -> bool:
    return "\u4e00" <= token <= "\u9fff"


def copy_grams(text: str, words_n: int, chars_n: int) -> set[tuple[str, ...]]:
    """The runs a copy check compares: `words_n` words with no Chinese in them, and
    `chars_n` Chinese characters."""
    tokens = words(text)
    # Chinese characters up to each position: a run's count is a difference of two
    cjk = [0, *accumulate(_is_cjk(t) for t in tokens)]
    grams = {tuple(tokens[i:i + words_n]) for i in range(len(tokens) - words_n + 1)
             if cjk[i + words_n] == cjk[i]}
    return grams | {tuple(tokens[i:i + chars_n]) for i in range(len(tokens) - chars_n + 1)
                    if cjk[i + chars_n] - cjk[i] == chars_n}


@lru_cache(maxsize=2048)
def _policy_copy_grams(text: str, words_n: int, chars_n: int) -> frozenset[tuple[str, ...]]:
    """`copy_grams` of a policy's own text (a guideline, a strategy, a reply contract): the
    same few hundred texts on every reply, so computed once each."""
    return frozenset(copy_grams(text, words_n, chars_n))


_LABEL = re.compile(r"^\s*-?\s*([^:：\n]{3,80})[:：]", re.M)


def private_labels(private: Sequence[str]) -> list[str]:
    """Line labels of the private texts ("Rules for this topic:") of three words or more,
    as word sequences."""
    labels = []
    for text in private:
        for m in _LABEL.finditer(text):
            tokens = words(m.group(1))
            if len(tokens) >= 3:
                labels.append(" ".join(tokens))
    return labels


def default_private(decision: Decision, policy: Policy) -> list[str]:
    """What a call for `decision` keeps private when the caller does not say: the rendered
    instructions (with and without the help contacts) and every regeneration correction."""
    from oyster.chain import render_instructions
    from oyster.respond.regenerate import regeneration_rules

    chain, strategy, language = decision.chain, decision.strategy, decision.language
    rules = regeneration_rules()
    corrections = [rules.corrections_heading]
    for rule in rules.problems.values():
        corrections += [rule.correction, *rule.by_strategy.values()]
    return [render_instructions(chain, strategy, policy, language, include_resources=True),
            render_instructions(chain, strategy, policy, language, include_resources=False),
            *corrections]


class Verifier:
    """Checks replies against decisions for one policy.

        verification = Verifier(policy).check(reply_text, decision, request=user_message)

    `check` takes the whole reply (`final=True`) or the text of a stream so far
    (`final=False`); pass `private` (the system instructions actually sent) and
    `conversation` (the messages replied to) when you have them: the leak check then
    compares with exactly what was sent, and the relevance check reads the whole
    conversation.
    """

    def __init__(self, policy: Policy, rules: VerifierRules | None = None,
                 relevance: RelevanceScorer | None = None,
                 moderator: Moderator | None = None) -> None:
        self.policy = policy
        self.rules = rules or default_rules()
        self.moderator = moderator or Moderator(policy.moderation)
        self._list_item = re.compile(self.rules.list_item, re.I | re.M)
        r = self.rules.relevance
        self.relevance = relevance or RelevanceScorer(
            r.embedder, min_sentence_words=r.min_sentence_words,
            min_reply_words=r.min_reply_words)
        self._allowed: dict[str, set[tuple[str, ...]]] = {}
        self._flat: dict[str, str] = {}
        self._markers: dict[str, frozenset[str]] = {}

    def check(self, text: str, decision: Decision, final: bool = True,
              request: str | None = None, *, private: Sequence[str] | None = None,
              conversation: Sequence[Message] | None = None) -> Verification:
        """Verify `text` as the reply that carries out `decision`. `request` (the user's last
        message) enables the `payload_echo` check; `final=False` treats `text` as the
        beginning of a reply and skips checks that need all of it. `private`: the private
        texts of the call (default: the instructions rendered for `decision`);
        `conversation`: the messages replied to (default: `request` alone)."""
        found: dict[Problem, str] = {}
        said = _said(conversation, request)
        with telemetry.span("oyster.verify", {"oyster.strategy": decision.strategy,
                                              "oyster.verify.final": final}) as span:
            for code, detail in self._problems(text, decision, final, request, private, said):
                found.setdefault(code, detail)
            span.set_attributes({"oyster.verified": not found, "oyster.problems": list(found)})
        return Verification(passed=not found, problems=list(found),
                            detail="; ".join(f"{c}: {d}" for c, d in found.items()), final=final)

    def warm_up(self) -> None:
        """Load what `check` reads, now rather than on the first reply: the moderator's head
        and encoder, the relevance calibration and banks, the fixed relevance anchors (the
        generic replies and every user type's needs, embedded and cached), and the policy's
        own reply texts per language."""
        if self.moderator.settings.enabled:
            self.moderator.segment_scores(WARM_UP_REPLY)
        cal = relevance_calibration(self.rules.relevance.calibration)
        languages = sorted(cal.thresholds) if cal is not None else []
        for language in languages:
            assert cal is not None
            relevance_bank(cal.bank_file, language)
            self._allowed_grams(language)
            self._policy_flat(language)
        if languages:
            self.relevance.embedder.embed(
                [*(g for gs in self.rules.relevance.generic.values() for g in gs),
                 *(t.needs for t in self.policy.user_types.values()), WARM_UP_REPLY])

    def prefetch(self, conversation: Sequence[Message]) -> None:
        """Embed now what the relevance check of a reply to `conversation` compares with
        (its last user turns), e.g. while the decision is being made on another core: the
        check then finds them in the embedder's cache. Never raises (the check itself
        would meet the same error and report it)."""
        try:
            if relevance_calibration(self.rules.relevance.calibration) is None:
                return
            anchors = [a for a in _said(conversation, None)[-3:] if a.strip()]
            if anchors:
                self.relevance.embedder.embed(anchors)
        except Exception:
            return

    def needs_resource(self, decision: Decision) -> bool:
        """Whether a `guide` reply to this decision must name a crisis resource."""
        if decision.strategy != "guide":
            return False
        vulnerable = decision.user_type.get("vulnerable", 0.0)
        return (vulnerable >= self.rules.resource_min_vulnerable
                or vulnerable >= max(decision.user_type.values(), default=0.0))

    def _problems(self, text: str, decision: Decision, final: bool, request: str | None,
                  private: Sequence[str] | None, said: list[str]
                  ) -> Iterable[tuple[Problem, str]]:
        rules = self.rules
        strategy = decision.strategy
        if final and not words(text):
            yield "empty_reply", "the reply has no words"
            return
        if private is None:
            private = default_private(decision, self.policy)
        if (hit := self._hazard(text, decision, private)) is not None:
            yield "hazard_leak", hit
        if (hit := self._chain_leak(text, decision, private, said)) is not None:
            yield "chain_leak", hit
        if (hit := self.meta_talk(text, decision, said)) is not None:
            yield "meta_talk", hit
        if strategy in ("guide", "correct") and (hit := self.empty_apology(text, final)):
            yield "empty_apology", hit

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

        if final and strategy != "refuse" and said and (hit := self.off_topic(text, decision,
                                                                              said)):
            yield "off_topic", hit
        if final and self.needs_resource(decision) and not has_resource(
                text, self.markers(decision.language)):
            yield "missing_resource", "no crisis resource from the policy is named"
        if strategy == "correct" and (first := split_sentences(text)[:1]) and (
                hit := rules.affirms_premise.first_match(first[0])) is not None:
            yield "missing_correction", f"the reply opens by agreeing ({hit!r})"
        if final and strategy == "correct" and self.correction(text, said) is None:
            yield "missing_correction", "the reply does not say the premise is wrong"
        if strategy == "guide" and (number := self.unknown_contact(text, decision, said)):
            yield "unknown_contact", f"{number!r} is not a contact the policy lists"
        if final and (lang := self._language(text)) and lang != decision.language:
            yield "wrong_language", f"reply reads as {lang}, the user wrote {decision.language}"
        elif final and (sentence := self._foreign_sentence(text, decision.language)):
            yield "wrong_language", f"{sentence!r} is not in {decision.language}"
        if (sentence := self._repeated(text)) is not None:
            yield "repetition", f"repeats {sentence!r}"

    # -- the checks, each usable on a whole reply or on a part of one ------------------

    def meta_talk(self, text: str, decision: Decision, said: Sequence[str] = ()) -> str | None:
        """A phrase that speaks about the conversation instead of to the person, or None."""
        rules = self.rules
        if (hit := rules.meta_talk.first_match(text)) is not None:
            return repr(hit)
        person = " ".join(said).lower()
        if ("user" not in person and "用户" not in person
                and (hit := rules.user_talk.first_match(text)) is not None):
            return repr(hit)
        for pattern_hit in rules.refers_above.matches(text):
            before = text[:text.find(pattern_hit)] if pattern_hit in text else text
            markers = self.markers(decision.language)
            if not self._list_item.search(before) and not has_resource(before, markers):
                return f"{pattern_hit!r} with nothing above it in the reply"
        return None

    def empty_apology(self, text: str, final: bool = True) -> str | None:
        """The opening sentence when it apologises for the reply itself, or None: it
        apologises for the assistant's own conduct ("sorry for the confusion"), or neither
        it nor the sentence after it turns to the person or what they are going through
        ("I'm so sorry. That sounds exhausting." is sympathy)."""
        rules = self.rules
        sentences = split_sentences(text)
        finished = final or bool(_FINISHED.search(text))
        if not sentences or (len(sentences) == 1 and not finished):
            return None  # the first sentence is not finished yet
        first = sentences[0]
        if rules.apology.first_match(first) is None:
            return None
        if rules.self_apology.first_match(first) is not None:
            return repr(first)
        if self._turns_to_person(first):
            return None
        if len(sentences) == 1 or (len(sentences) == 2 and not finished):
            return repr(first) if final else None  # the next sentence may still turn to them
        return None if self._turns_to_person(sentences[1]) else repr(first)

    def _turns_to_person(self, sentence: str) -> bool:
        return (self.rules.to_person.first_match(sentence) is not None
                or self.rules.sympathy.first_match(sentence) is not None)

    def correction(self, text: str, said: Sequence[str] = ()) -> str | None:
        """The sentence of `text` that says the person's belief is wrong, or None: one that
        calls it false or unfounded ("a myth", "no evidence", 误区), or negates it — a
        negation whose scope holds a word of the person's message or a claim predicate
        ("doesn't cure", "isn't safe", "不能代替"). See `correction` in verify.yaml."""
        rules = self.rules.correction
        claim = _claim_words(" ".join(said[-2:]))
        for sentence in split_sentences(text):
            plain = _blank(sentence, self.rules.refusal)  # a refusal's "can't" negates nothing
            if rules.says_wrong.first_match(plain) is not None:
                return sentence
            for scope in _negation_scopes(plain, rules):
                if rules.claims.first_match(scope) is not None or _mentions(scope, claim):
                    return sentence
        return None

    def off_topic(self, text: str, decision: Decision, said: Sequence[str], final: bool = True
                  ) -> str | None:
        """Why the text (or one of its sentences) is not about the conversation, or None."""
        cal = relevance_calibration(self.rules.relevance.calibration)
        language = decision.language
        if cal is None or language not in cal.thresholds:
            return None
        if not final:  # judge only the finished sentences of a window
            ends = [m.end() for m in re.finditer(r"[.!?。！？\n]", text)]
            text = text[:ends[-1]] if ends else ""
            if not text.strip():
                return None
        anchors = said[-3:]
        skip = sorted(self.markers(language))
        generic = [decision.chain.user_needs,
                   *(g for gs in self.rules.relevance.generic.values() for g in gs)]
        text = self._without_policy_text(text, language)
        if not text.strip():
            return None
        rel = self.relevance.score(text, anchors, generic, skip=skip,
                                   bank=relevance_bank(cal.bank_file, language),
                                   standardise=cal.score == "z")
        cut = cal.thresholds[language]
        if final and rel.reply is not None and rel.reply < cut["reply"]:
            return f"the reply is not about the message (margin {rel.reply:+.3f})"
        weakest = rel.weakest()
        if weakest is not None and weakest[1] < cut["sentence"]:
            return f"{weakest[0]!r} is about something else (margin {weakest[1]:+.3f})"
        return None

    def _without_policy_text(self, text: str, language: str, private: Sequence[str] = ()
                             ) -> str:
        """`text` less the sentences the policy itself wrote (its scaffolds, fallbacks and
        help contacts are never a digression), and those copied from `private` texts."""
        free = self._policy_flat(language)
        if private:
            free += " | " + " | ".join(" ".join(words(t)) for t in private)
        kept = [s for s in split_sentences(text)
                if not (len(words(s)) >= 3 and " ".join(words(s)) in free)]
        return "\n".join(kept)

    def unknown_contact(self, text: str, decision: Decision, said: Sequence[str] = ()
                        ) -> str | None:
        """A phone-like number that is neither the policy's nor the person's, or None."""
        markers = self.markers(decision.language)
        given = re.sub(r"\D", "", " ".join(said))
        for number in _PHONE_LIKE.findall(text):
            digits = re.sub(r"\D", "", number)
            if (len(digits) >= self.rules.contact_min_digits and digits not in markers
                    and digits not in given):
                return number.strip()
        return None

    def _foreign_sentence(self, text: str, language: str) -> str | None:
        """A sentence written as prose in the other language: five words or more (web
        addresses and code left out), none in the reply's language, and common function
        words of the other language. Names, addresses and code lines are not prose."""
        markers = self.rules.prose_markers
        for sentence in split_sentences(_without_code(text)):
            if _CODE_LIKE.search(sentence):
                continue
            plain = _ADDRESS.sub(" ", sentence)
            tokens = words(plain)
            cjk = sum(1 for t in tokens if _is_cjk(t))
            if language == "zh" and cjk == 0 and len(tokens) >= 5 and sum(
                    1 for p in compiled_terms(tuple(markers.en)) if p.search(plain)
            ) >= self.rules.min_prose_markers:
                return sentence
            if language == "en" and cjk >= 10 and cjk > len(tokens) - cjk and sum(
                    1 for m in markers.zh if m in plain) >= self.rules.min_prose_markers:
                return sentence
        return None

    def _hazard(self, text: str, decision: Decision, private: Sequence[str] = ()
                ) -> str | None:
        # the reply on its own, whatever was asked: the decision only sets how strict; the
        # sentences the policy wrote itself (scaffolds, refusals, help contacts, and the
        # private instructions, whose recital is chain_leak's to report) are trusted
        written = self._without_policy_text(text, decision.language, private)
        moderation = self.moderator.moderate(
            written, self.moderator.strictness(decision.level, decision.strategy))
        if written.strip() and moderation.flagged:
            return moderation.detail
        if decision.strategy == "answer" or decision.level == "R0":
            return None
        for category in [ANY_RISK, *(c.id for c in decision.categories)]:
            terms = self.rules.hazards.get(category)
            if terms and (hit := terms.first_match(text)) is not None:
                return f"{hit!r} ({category})"
        return None

    def _allowed_texts(self, language: str) -> list[str]:
        """The policy's own reply texts (help contacts, scaffolds, fallbacks)."""
        from oyster.respond.fallback import policy_reply_texts

        return policy_reply_texts(self.policy, language)

    def markers(self, language: str) -> frozenset[str]:
        """`resource_markers` of this verifier's policy, computed once per language (several
        checks of every reply read them)."""
        if language not in self._markers:
            self._markers[language] = frozenset(resource_markers(self.policy, language))
        return self._markers[language]

    def _policy_flat(self, language: str) -> str:
        """The policy's own reply texts as lower-cased word sequences, for phrase lookups."""
        if language not in self._flat:
            self._flat[language] = " | ".join(" ".join(words(t))
                                              for t in self._allowed_texts(language))
        return self._flat[language]

    def _allowed_grams(self, language: str) -> set[tuple[str, ...]]:
        if language not in self._allowed:
            rules = self.rules
            grams: set[tuple[str, ...]] = set()
            for t in self._allowed_texts(language):
                grams |= copy_grams(t, rules.chain_copy_words, rules.chain_copy_chars)
            self._allowed[language] = grams
        return self._allowed[language]

    def _chain_leak(self, text: str, decision: Decision, private: Sequence[str] | None,
                    said: Sequence[str]) -> str | None:
        if (hit := self.rules.chain_terms.first_match(text)) is not None:
            return repr(hit)
        chain = decision.chain
        rendered = private if private is not None else default_private(decision, self.policy)
        fixed = [chain.user_needs, chain.risk_intent, *chain.guidelines,
                 *chain.safety_strategies, *chain.usefulness_strategies,
                 *self.policy.strategies[decision.strategy].reply_contract]
        texts = [*rendered, *fixed]
        w, c = self.rules.chain_copy_words, self.rules.chain_copy_chars
        secret: set[tuple[str, ...]] = set().union(
            *(copy_grams(t, w, c) for t in rendered),
            *(_policy_copy_grams(t, w, c) for t in fixed))
        allowed = self._allowed_grams(decision.language).union(
            *(copy_grams(t, w, c) for t in said))
        copied = (copy_grams(text, w, c) & secret) - allowed
        if copied:
            return f"copies {' '.join(min(copied))!r} from the instructions"
        flat = f" {' '.join(words(text))} "
        free = " | ".join([self._policy_flat(decision.language),
                           *(" ".join(words(t)) for t in said)])
        label = next((lb for lb in private_labels(texts)
                      if f" {lb} " in flat and lb not in free), None)
        return f"copies the label {label!r} from the instructions" if label else None

    def _echo(self, text: str, request: str) -> str | None:
        n = self.rules.payload_echo_words
        echoed = ngrams(words(text), n) & ngrams(words(request), n)
        return " ".join(min(echoed)) if echoed else None

    def _language(self, text: str) -> str | None:
        """The language the reply's prose is in (None when too short to say). Code, web
        addresses and Latin-script lines with no common English word (names: a help line, a
        drug, a book) are left out."""
        markers = compiled_terms(tuple(self.rules.prose_markers.en))
        lines = [line for line in _ADDRESS.sub(" ", _without_code(text)).splitlines()
                 if sum(1 for ch in line if _is_cjk(ch)) >= 4
                 or any(p.search(line) for p in markers)]
        text = "\n".join(lines)
        letters = sum(1 for ch in text if ch.isalpha())
        if letters < 4:
            return None
        return detect_language(text)

    def _repeated(self, text: str) -> str | None:
        sentences = [" ".join(words(s)) for s in _SENTENCE_END.split(text)]
        counts = Counter(s for s in sentences if len(s.split()) >= 3)
        sentence, n = counts.most_common(1)[0] if counts else ("", 0)
        return sentence if n >= self.rules.repeated_sentence_limit else None


def _said(conversation: Sequence[Message] | None, request: str | None) -> list[str]:
    """What the person said, oldest first (the words a reply may repeat)."""
    if conversation is not None:
        return [m.content for m in conversation if m.role == "user" and m.content.strip()]
    return [request] if request else []


_FINISHED = re.compile(r"[.!?。！？]\s*$")
_FENCED = re.compile(r"```.*?(?:```|$)|`[^`\n]*`", re.S)
_ADDRESS = re.compile(r"https?://\S+|www\.\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
                      r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|gov|edu|cn|uk|io|info)\b\S*",
                      re.I)
# A line of code or a command: operators, brackets, paths and identifiers prose never has.
_CODE_LIKE = re.compile(r"[=<>{}\[\]|$#\\]|->|\(\)|\b\w+[._]\w+\(|(?:^|\s)--?[a-z]")


def _without_code(text: str) -> str:
    return _FENCED.sub("\n", text)


def _blank(text: str, terms: TermList) -> str:
    """`text` with every match of `terms` replaced by spaces (positions kept)."""
    spans = [m.span() for p in compiled_terms(tuple(terms.en)) for m in p.finditer(text)]
    spans += [(i, i + len(t)) for t in terms.zh if t
              for i in (m.start() for m in re.finditer(re.escape(t), text))]
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


_EN_WORD = re.compile(r"[a-z0-9']+")
_EN_SUFFIX = re.compile(r"(?:ing|ed|es|e|s|d)$")
_STOPWORDS = frozenset({
    "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "for", "with",
    "from", "by", "as", "is", "are", "was", "were", "be", "been", "being", "am", "do", "does",
    "did", "can", "could", "will", "would", "should", "shall", "may", "might", "must", "i",
    "me", "my", "mine", "we", "us", "our", "you", "your", "yours", "he", "him", "his", "she",
    "her", "it", "its", "they", "them", "their", "this", "that", "these", "those", "there",
    "here", "what", "which", "who", "whom", "how", "why", "when", "where", "not", "no", "yes",
    "so", "than", "then", "too", "very", "just", "also", "about", "into", "over", "again",
    "more", "most", "some", "any", "all", "each", "such", "only", "own", "same", "other",
    "really", "get", "got", "ok", "okay", "please", "tell", "know", "think", "want", "need",
})
# Characters that carry grammar rather than the claim (left out of the claim's bigrams).
_ZH_GRAMMAR = frozenset("的了吗呢吧啊呀是我你他她它们这那个么什怎在有和就都也会能可以不没要还把被给让很吃喝")


def _stem(word: str) -> str:
    """A crude stem for matching a claim's words ("cured", "cures" → "cur")."""
    stripped = _EN_SUFFIX.sub("", word)
    return (stripped if len(stripped) >= 3 else word)[:5]


def _claim_words(message: str) -> tuple[set[str], set[str]]:
    """The content words of what the person said: English stems and Chinese bigrams."""
    lowered = message.lower()
    en = {_stem(w.strip("'")) for w in _EN_WORD.findall(lowered)
          if len(w) >= 3 and w not in _STOPWORDS}
    zh = {message[i:i + 2] for i in range(len(message) - 1)
          if all(_is_cjk(c) and c not in _ZH_GRAMMAR for c in message[i:i + 2])}
    return en, zh


def _mentions(scope: str, claim: tuple[set[str], set[str]]) -> bool:
    en, zh = claim
    if en and any(_stem(w.strip("'")) in en for w in _EN_WORD.findall(scope.lower())
                  if len(w) >= 3 and w not in _STOPWORDS):
        return True
    return any(scope[i:i + 2] in zh for i in range(len(scope) - 1))


def _negation_scopes(text: str, rules: CorrectionRules) -> Iterable[str]:
    """For each negation in `text` (not one of `not_negation`), the text it scopes over:
    English, the negation and the next `scope_words` words; Chinese, from
    `scope_before_chars` characters before it ("醒不了") to `scope_chars` after it."""
    skip = [m.span() for p in compiled_terms(tuple(rules.not_negation.en))
            for m in p.finditer(text)]
    skip += [(m.start(), m.end()) for t in rules.not_negation.zh if t
             for m in re.finditer(re.escape(t), text)]

    def skipped(i: int) -> bool:
        return any(start <= i < end for start, end in skip)

    for pattern in compiled_terms(tuple(rules.negation.en)):
        for m in pattern.finditer(text):
            if skipped(m.start()):
                continue
            following = list(_EN_WORD.finditer(text[m.end():].lower()))[:rules.scope_words]
            yield text[m.start():m.end() + (following[-1].end() if following else 0)]
    for neg in rules.negation.zh:
        for m in re.finditer(re.escape(neg), text):
            i = m.start()
            if skipped(i) or (i > 0 and m.end() < len(text) and text[i - 1] == text[m.end()]):
                continue  # a compound that negates nothing, or a question: 打不打
            yield text[max(0, i - rules.scope_before_chars):m.end() + rules.scope_chars]
