"""Support scaffolds (the policy's `replies.scaffolds`): where a bad reply costs most, what
goes out is never worse than what the policy would have written.

When a model's reply in such a situation fails verification, it is not regenerated: the
reply is composed from the scaffold's `core` (policy text: the facts and the help contacts
for the person's language) and the model's own personal parts, its opening sentence and
the alternative help it offered, each verified on its own. A model part that fails is
replaced by the scaffold's written default, so in the worst case the scaffold alone goes
out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from oyster.decision import Decision
from oyster.respond.coherence import sentence_weight, split_sentences
from oyster.respond.fallback import format_resources
from oyster.respond.verify import Verifier, resource_markers, words
from oyster.taxonomy.policy import Policy
from oyster.taxonomy.replies import FALLBACK_LANGUAGE, Scaffold, ScaffoldText, TermList
from oyster.types import Message, detect_language

PartKind = Literal["reply", "opening", "core", "alternative", "resources", "fallback",
                   "refusal"]
Source = Literal["model", "policy"]

# Sentences that offer the person something to do: the model's "alternative help".
OFFER = TermList(
    en=[r"you (could|can|might|may)", r"^\s*(try|consider)", r"it (might|may|could) help",
        r"would you (like|want)", r"if you('d| would) like", r"i can (help|stay|talk|go)",
        r"let's", r"how about", r"(talk|talking|speak|speaking) (to|with)", r"reach out",
        r"one (small )?step"],
    zh=["你可以", "可以试", "试着", "不妨", "建议", "我们可以", "要不要", "如果你愿意", "找",
        "联系", "聊聊"])
MAX_OPENING_WORDS = 40
MAX_ALTERNATIVE_SENTENCES = 2
# A connective that only makes sense after the sentence it followed in the model's reply.
_LEADING_CONNECTIVE = re.compile(r"^(however|but|so|also|and|additionally|instead|then)\b[,\s]*"
                                 r"|^(但是|不过|所以|而且|另外|然后)[，,\s]*", re.I)
# Labels, code and list markers do not belong in a personal sentence.
_NOT_PERSONAL = re.compile(r"[:：]|```|^\s*([-*•#]|\d+[.)])", re.M)
_WEB = re.compile(r"\b[\w-]+\.(com|org|net|gov|uk|cn|io)\b", re.I)


def _echoes(part: str, message: str) -> bool:
    """Whether `part` repeats a run of the person's message (five words, or six Chinese
    characters): an opening that restates a plan ("take all the pills at once") must never
    go out with a support scaffold."""
    from oyster.respond.verify import copy_grams

    return bool(copy_grams(part, 5, 6) & copy_grams(message, 5, 6))


class ReplyPart(BaseModel):
    """One part of a reply and who wrote it."""

    model_config = ConfigDict(frozen=True)

    kind: PartKind
    text: str
    source: Source
    problems: list[str] = []  # why a model's part was replaced (on the policy part)


def select_scaffold(decision: Decision, policy: Policy, message: str
                    ) -> tuple[str, Scaffold] | None:
    """The scaffold for this decision and message, or None."""
    eligible = [(name, s) for name, s in policy.replies.scaffolds.items()
                if decision.strategy in s.strategies]
    for name, scaffold in eligible:
        if scaffold.cued_by(message):
            return name, scaffold
    top = decision.categories[0].id if decision.categories else None
    dominant = max(decision.user_type, key=lambda t: decision.user_type[t])
    for name, scaffold in eligible:
        if (scaffold.default_for_categories
                and (not scaffold.categories or top in scaffold.categories)
                and (not scaffold.user_types or dominant in scaffold.user_types)):
            return name, scaffold
    return None


def scaffold_text(scaffold: Scaffold, policy: Policy, language: str) -> ScaffoldText:
    """The scaffold in `language` (else English), with its help contacts written in."""
    text = scaffold.text.get(language) or scaffold.text[FALLBACK_LANGUAGE]
    own = scaffold.resources.get(language) or scaffold.resources.get(FALLBACK_LANGUAGE, [])
    resources = format_resources(policy, language, own) if own else ""
    if scaffold.crisis_lines:
        resources = "\n".join(filter(None, [resources, format_resources(policy, language)]))
    return text.model_copy(update={"core": text.core.replace("{resources}", resources)})


def join_parts(parts: Sequence[ReplyPart]) -> str:
    return "\n\n".join(p.text.strip() for p in parts if p.text.strip())


class Composer:
    """Builds a scaffolded reply from a model's text, checking each of its parts."""

    def __init__(self, policy: Policy, verifier: Verifier) -> None:
        self.policy = policy
        self.verifier = verifier

    def part_problems(self, part: str, decision: Decision, conversation: Sequence[Message],
                      private: Sequence[str] | None, opening: bool) -> list[str]:
        """Why a model-written part cannot go out with the scaffold (empty: it can)."""
        v = self.verifier.check(part, decision, final=False, private=private,
                                conversation=conversation)
        problems: list[str] = list(v.problems)
        if self.verifier.rules.refusal.first_match(part):
            problems.append("refusal")
        if sentence_weight(part) >= 3 and detect_language(part) != decision.language:
            problems.append("wrong_language")
        # A contact the model made up must never reach a person in crisis.
        said = [m.content for m in conversation if m.role == "user"]
        markers = resource_markers(self.policy, decision.language)
        if self.verifier.unknown_contact(part, decision, said) or any(
                m.group(0).lower() not in markers for m in _WEB.finditer(part)):
            problems.append("unknown_contact")
        if _NOT_PERSONAL.search(part):
            problems.append("not_personal")
        if not opening and not self._about_the_person(part, decision, conversation):
            problems.append("off_topic")
        if not opening and self.verifier.rules.to_person.first_match(part) is None:
            problems.append("not_to_the_person")
        if opening:
            rules = self.verifier.rules
            if self.verifier.empty_apology(part) or sentence_weight(part) < 3:
                problems.append("empty_opening")
            elif rules.to_person.first_match(part) is None:
                problems.append("not_to_the_person")
            elif said and _echoes(part, said[-1]):
                problems.append("echoes_the_message")
            elif not self._about_the_person(part, decision, conversation):
                problems.append("off_topic")
        return list(dict.fromkeys(problems))

    def _about_the_person(self, part: str, decision: Decision,
                          conversation: Sequence[Message]) -> bool:
        """A model part must answer what the person said, not just sound supportive: its
        relevance is judged against their messages alone, without the generic sentences."""
        from oyster.respond.verify import relevance_bank, relevance_calibration

        cal = relevance_calibration(self.verifier.rules.relevance.calibration)
        if cal is None or decision.language not in cal.thresholds:
            return True
        said = [m.content for m in conversation if m.role == "user"][-3:]
        scorer = self.verifier.relevance
        rel = scorer.score(part, said, bank=relevance_bank(cal.bank_file, decision.language),
                           standardise=cal.score == "z", min_words=1)
        weakest = rel.weakest()
        return weakest is None or weakest[1] >= cal.thresholds[decision.language]["sentence"]

    def compose(self, decision: Decision, scaffold: Scaffold, model_text: str,
                conversation: Sequence[Message], private: Sequence[str] | None
                ) -> list[ReplyPart]:
        """The scaffold's core between the model's opening and alternative help, where those
        pass; the scaffold's own defaults where they do not."""
        text = scaffold_text(scaffold, self.policy, decision.language)
        sentences = [s for s in split_sentences(model_text) if words(s)]
        opening, rest = self._opening(sentences)
        parts: list[ReplyPart] = []
        problems = (self.part_problems(opening, decision, conversation, private, opening=True)
                    if opening else ["no_opening"])
        parts.append(ReplyPart(kind="opening", text=opening, source="model") if not problems
                     else ReplyPart(kind="opening", text=text.opening, source="policy",
                                    problems=problems))
        parts.append(ReplyPart(kind="core", text=text.core, source="policy"))
        chosen: list[str] = []
        rejected: list[str] = []
        for sentence in rest:
            if len(chosen) == MAX_ALTERNATIVE_SENTENCES:
                break
            if OFFER.first_match(sentence) is None:
                continue
            found = self.part_problems(sentence, decision, conversation, private,
                                       opening=False)
            if found:
                rejected += found
            else:
                chosen.append(sentence)
        if chosen:
            first = _LEADING_CONNECTIVE.sub("", chosen[0]).strip()
            chosen[0] = first[:1].upper() + first[1:]
        if chosen:
            parts.append(ReplyPart(kind="alternative", text=" ".join(chosen), source="model"))
        else:
            parts.append(ReplyPart(kind="alternative", text=text.alternative, source="policy",
                                   problems=list(dict.fromkeys(rejected)) or ["no_offer"]))
        return parts

    def scaffold_alone(self, decision: Decision, scaffold: Scaffold) -> list[ReplyPart]:
        text = scaffold_text(scaffold, self.policy, decision.language)
        return [ReplyPart(kind="opening", text=text.opening, source="policy"),
                ReplyPart(kind="core", text=text.core, source="policy"),
                ReplyPart(kind="alternative", text=text.alternative, source="policy")]

    @staticmethod
    def _opening(sentences: list[str]) -> tuple[str, list[str]]:
        """The model's opening (its first sentence, or two when the first is very short)
        and the sentences after it."""
        if not sentences:
            return "", []
        take = 2 if len(sentences) > 1 and sentence_weight(sentences[0]) < 5 else 1
        opening = " ".join(sentences[:take])
        if sentence_weight(opening) > MAX_OPENING_WORDS:
            return "", sentences[take:]
        return opening, sentences[take:]
