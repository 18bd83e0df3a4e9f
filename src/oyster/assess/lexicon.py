"""A fast rule-based assessor: category patterns and cue phrases from `lexicon.yaml`, plus
the structural attack detectors. No model, microseconds per turn. Useful where no embedding
model can be loaded, and as a transparent baseline for the learned assessor."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import ClassVar

from oyster._memo import memo_by_text
from oyster._packaged import packaged_data
from oyster.assess.attacks import detect_attacks
from oyster.assess.base import (
    Assessment,
    Assessor,
    AttackFinding,
    CategoryScore,
    PayloadFinding,
    TurnAssessment,
    user_turn_indices,
)
from oyster.assess.deobfuscate import (
    JUDGE_MIN,
    REPLACE_MIN,
    Decoded,
    explained,
    merge_attacks,
    read,
    report,
)
from oyster.errors import AssessorError
from oyster.policy import Policy
from oyster.types import LEVELS, Form, Language, Level, Message, UserType, detect_language

CUES = ("distress", "false_belief", "harmful_intent", "professional", "benign_context",
        "request", "question", "refusal")
# Strong multiplicative likelihood ratios: a cue is a lot of evidence for one type.
CUE_TYPE = {"distress": "vulnerable", "false_belief": "misinformed",
            "harmful_intent": "malicious", "professional": "benign"}
CUE_RATIO = 30.0
ATTACK_MIN = 0.5  # confidence from which an attack finding marks a turn adversarial


def _adversarial(findings: Sequence[AttackFinding]) -> bool:
    return any(f.confidence >= ATTACK_MIN for f in findings)


class _Patterns:
    """Per-language patterns: English regexes joined into one (word boundaries added),
    Chinese substrings."""

    def __init__(self, spec: dict[str, list[str]], where: str) -> None:
        en = [p for p in spec.get("en", []) if p]
        try:
            for p in en:
                re.compile(p)
            joined = "|".join(f"(?:{p})" for p in en)
            self.en = re.compile(rf"(?<![\w])(?:{joined})(?![\w])", re.I) if en else None
        except re.error as e:
            raise AssessorError(f"lexicon.yaml: bad pattern in {where}: {e}") from e
        self.zh = [s for s in spec.get("zh", []) if s]

    def found(self, text: str, lowered: str) -> bool:
        """Whether the text has any match (stops at the first)."""
        return ((self.en is not None and self.en.search(text) is not None)
                or any(s in lowered for s in self.zh))

    def count(self, text: str, lowered: str) -> int:
        """How many matches (English) and distinct substrings (Chinese) the text has."""
        n = sum(1 for _ in self.en.finditer(text)) if self.en is not None else 0
        return n + sum(1 for s in self.zh if s in lowered)


@cache
def _lexicon() -> tuple[dict[str, _Patterns], dict[str, _Patterns], frozenset[str], dict[str, str]]:
    raw = packaged_data("oyster.assess", "lexicon.yaml")
    cats = {cid: _Patterns(spec, f"categories.{cid}") for cid, spec in raw["categories"].items()}
    cues = {name: _Patterns(raw["cues"].get(name, {}), f"cues.{name}") for name in CUES}
    return (cats, cues, frozenset(raw.get("operational_categories", [])),
            dict(raw.get("cue_categories", {})))


def _tokens(text: str) -> set[str]:
    lowered = text.lower()
    words = set(re.findall(r"[a-z0-9']{3,}", lowered))
    return words | {lowered[i:i + 2] for i in range(len(lowered) - 1)
                    if "\u4e00" <= lowered[i] <= "\u9fff"}


def similarity(a: str, b: str) -> float:
    """Jaccard overlap of words (and Chinese bigrams)."""
    ta, tb = _tokens(a), _tokens(b)
    return len(ta & tb) / len(ta | tb) if ta and tb else 0.0


class LexiconAssessor(Assessor):
    """Rules over category patterns and cue phrases (English and Chinese)."""

    name: ClassVar[str] = "lexicon"

    def __init__(self, policy: Policy, *, deobfuscate: bool = True,
                 judge_min: float = JUDGE_MIN, replace_min: float = REPLACE_MIN) -> None:
        super().__init__(policy)
        self.deobfuscate = deobfuscate  # also judge what a turn hides (assess.deobfuscate)
        self.judge_min = judge_min  # the stage's thresholds (`assess.deobfuscate.read`)
        self.replace_min = replace_min
        cats, self._cues, self._operational, cue_categories = _lexicon()
        self._cue_categories = {cue: cid for cue, cid in cue_categories.items()
                                if policy.has_category(cid)}
        self._cats = {cid: p for cid, p in cats.items() if policy.has_category(cid)}
        self._harm_cues = memo_by_text(self._harm_cue)  # one decision asks several times
        # Chinese terms whose characters alone, in any order, still name a harmful ask
        self._scrambled_terms = [t for t in [
            *self._cues["harmful_intent"].zh,
            *(s for cid, p in self._cats.items() if cid in self._operational for s in p.zh)]
            if len(t) >= 2]

    def _cue(self, name: str, text: str, lowered: str) -> bool:
        return self._cues[name].found(text, lowered)

    def harm_cue(self, text: str) -> str:
        """What marks this text as an ask to cause harm, by rule: "intent" (a stated harmful
        aim, e.g. "without getting caught"), "operational" (an instruction on an operational
        category with no distress, false-belief, professional or benign-context cue), or ""."""
        return self._harm_cues(text)

    def _harm_cue(self, text: str) -> str:
        lowered = text.lower()
        if self._cue("harmful_intent", text, lowered):
            return "intent"
        operational = any(p.found(text, lowered) for cid, p in self._cats.items()
                          if cid in self._operational)
        if (operational and self._form(text, lowered) == "instruction"
                and not any(self._cue(c, text, lowered) for c in (
                    "distress", "false_belief", "professional", "benign_context"))):
            return "operational"
        return ""

    def pretext_cue(self, text: str) -> bool:
        """Whether the text gives a reason for asking (a professional or a benign-context
        cue: "for a class", "I'm a nurse"): the part of a rephrased ask that changes its
        look, not what it asks for."""
        lowered = text.lower()
        return self._cue("professional", text, lowered) or self._cue("benign_context", text,
                                                                      lowered)

    def false_belief_cue(self, text: str) -> bool:
        """Whether the text states or acts on a false belief (a `false_belief` cue) with no
        stated harmful aim."""
        lowered = text.lower()
        return self._cue("false_belief", text, lowered) and not self._cue(
            "harmful_intent", text, lowered)

    def scrambled_harm_cue(self, text: str) -> bool:
        """For text whose characters were shuffled: whether every character of a Chinese
        harmful-intent or operational term occurs in it (order is lost, the characters
        are not). Only meaningful once a shuffle was detected."""
        chars = set(text.lower())
        return any(chars.issuperset(t) for t in self._scrambled_terms)

    def _form(self, text: str, lowered: str) -> Form:
        if self._cue("request", text, lowered):
            return "instruction"
        if self._cue("question", text, lowered):
            return "question"
        return "statement"

    def _turn(self, messages: Sequence[Message], i: int, attacks: list[AttackFinding],
              earlier_risky: list[int]) -> TurnAssessment:
        text = messages[i].content
        lowered = text.lower()
        language: Language = detect_language(text)
        hits = {cid: p.count(text, lowered) for cid, p in self._cats.items()}
        categories = [
            CategoryScore(id=cid, name=self.policy.category(cid).name_en,
                          score=round(1 - 0.4**n, 3))
            for cid, n in sorted(hits.items(), key=lambda kv: -kv[1]) if n > 0
        ]
        cue = {name: self._cue(name, text, lowered) for name in CUES}
        if not categories:
            categories = [CategoryScore(id=cid, name=self.policy.category(cid).name_en, score=0.6)
                          for name, cid in self._cue_categories.items() if cue[name]]
        form = self._form(text, lowered)
        operational = any(c.id in self._operational for c in categories)

        # a weak structural signal (a short line that merely reads oddly) is reported but
        # does not make the turn adversarial
        wrapped = _adversarial(attacks)
        level: Level
        if wrapped or cue["harmful_intent"]:
            level = "R2"
        elif not categories or (cue["benign_context"] and not cue["distress"]):
            level = "R0"
        elif (form == "instruction" and operational
              and not (cue["distress"] or cue["false_belief"] or cue["professional"])):
            level = "R2"
        else:
            level = "R1"

        # With no cue, a sensitive topic says little about who asks (mildly benign, as most
        # askers are: 1.67 : 1, so that at the default evidence strength 2.0 an R1 health
        # question still gets a careful answer); a fired cue is strong evidence for its type
        # and against an incidental reading.
        evidence: dict[UserType, float] = {"benign": 1.0, "vulnerable": 0.6,
                                           "misinformed": 0.6, "malicious": 0.6}
        fired = [t for name, t in CUE_TYPE.items() if cue[name]]
        if wrapped or level == "R2":
            fired.append("malicious")
        for user_type in fired:
            evidence[user_type] *= CUE_RATIO  # type: ignore[index]
            if user_type != "benign":
                evidence["benign"] /= 3
        if level == "R0":
            evidence["benign"] *= CUE_RATIO
        total = sum(evidence.values())

        repeats = level != "R0" and any(
            similarity(text, messages[j].content) >= self.policy.game.belief.repeat_similarity
            and any(m.role == "assistant" and self._cue("refusal", m.content, m.content.lower())
                    for m in messages[j + 1:i])
            for j in earlier_risky
        )
        probs = {"R0": 0.1, "R1": 0.1, "R2": 0.1}
        probs[level] = 0.8
        return TurnAssessment(
            turn=i, language=language, level=level, level_probs=probs,  # type: ignore[arg-type]
            categories=categories, form=form, attacks=attacks,
            type_evidence={t: round(v / total, 4) for t, v in evidence.items()},
            repeats_refused_ask=repeats,
        )

    def assess(self, messages: Sequence[Message]) -> Assessment:
        user_idx = user_turn_indices(messages)
        findings = detect_attacks(messages)
        turns: list[TurnAssessment] = []
        payloads: list[PayloadFinding] = []
        for i in user_idx:
            risky = [t.turn for t in turns if t.level != "R0"]
            own = [f for f in findings if f.turn == i]
            turn = self._turn(messages, i, own, risky)
            if self.deobfuscate:
                turn, found = self._riskiest_reading(messages, i, turn, own, risky)
                payloads += found
            turns.append(turn)
        now = turns[-1]
        return Assessment(
            assessor=self.name, language=now.language, level=now.level,
            level_probs=now.level_probs, categories=now.categories, form=now.form,
            aggressive=_adversarial(now.attacks),
            attacks=now.attacks, turns=turns, confidence=0.6, payloads=payloads,
        )

    # ------------------------------------------------ de-obfuscation (issue #13, part 2)
    def _riskiest_reading(self, messages: Sequence[Message], i: int, written: TurnAssessment,
                          attacks: list[AttackFinding], earlier_risky: list[int]
                          ) -> tuple[TurnAssessment, list[PayloadFinding]]:
        """Judge turn `i` as written and each payload decoded from it as a message of its
        own (`assess.deobfuscate.read`), and keep the riskiest reading. A risky payload is
        judged with its technique as an attack on it (hiding a risky ask is adversarial); a
        harmless one is left as it reads. Where a confident payload replaces the surface,
        the techniques its decoding explains no longer make the surface adversarial."""
        plan = read(messages[i].content, judge_min=self.judge_min, replace_min=self.replace_min)
        if not plan.payloads:
            return written, []
        if plan.surface_replaced:
            gone = set().union(*(explained(p) for p in plan.payloads))
            written = self._turn(messages, i, [f for f in attacks if f.technique not in gone],
                                 earlier_risky)
        judged: list[tuple[Decoded | None, TurnAssessment]] = [(None, written)]
        for p in plan.payloads:
            alone = [*messages[:i], Message(role="user", content=p.text), *messages[i + 1:]]
            turn = self._turn(alone, i, [], earlier_risky)
            if turn.level != "R0":
                hidden = AttackFinding(technique=p.technique, turn=i, confidence=p.confidence,
                                       evidence=p.evidence)
                turn = self._turn(alone, i, [hidden], earlier_risky)
            judged.append((p, turn))
        _, best = max(judged, key=lambda pt: LEVELS.index(pt[1].level))  # ties: as written
        decoded, records = report(i, [(p, t.level) for p, t in judged if p is not None])
        return best.model_copy(update={"attacks": merge_attacks(attacks, decoded),
                                       "language": written.language}), records
