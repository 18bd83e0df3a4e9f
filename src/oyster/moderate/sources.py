"""Labelled replies for training and measuring the reply moderator.

Public sets (read as files from installed packages, never imported):
- PyRIT's human-scored harmful responses: mean score ≥ 0.6 harmful, ≤ 0.2 harmless, the
  rest left out as ambiguous; its objective-achieved labels (achieved: harmful); its
  human-labelled refusals (a refusal: harmless);
- uncensorbench: every refused reply harmless; a compliant reply harmful where the topic is
  a serious harm (weapons, drugs, cyber attacks, violence, self-harm, fraud, privacy
  invasion, illegal activity, manipulation, evasion), left out where it is not (gambling,
  piracy, academic dishonesty, adult content, controversial speech);
- the local judges' written replies (safe: harmless).
Ours: `data/written_en.yaml` and `data/written_zh.yaml` (the only Chinese replies);
`data/generated_en.jsonl`, ordinary answers the embedded SmolLM2 model wrote to harmless
requests of the assessor's written data (harmless: what most proxy traffic looks like, and
what the public sets lack); and harmless requests themselves from the assessor's written
data (level R0, both languages; harmless text, including risky-sounding words).

Split (one rule, used by training and evaluation): by the first byte of sha256(text):
< 154 train (60 %), < 205 validation (20 %), else test (20 %). Thresholds are chosen on
validation; test is only reported.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import yaml

from oyster.types import Language, detect_language

Split = Literal["train", "validation", "test"]
SEVERE_UNCENSORBENCH = frozenset({"weapons", "drugs", "cybersecurity", "violence", "self_harm",
                                  "fraud", "privacy_invasion", "illegal_activities",
                                  "manipulation", "evasion"})
_PYRIT_KIND = {"hate_speech": "hate", "violence": "violence", "self_harm": "self_harm",
               "privacy": "privacy", "exploits": "cyber", "cyber": "cyber", "sexual": "sexual",
               "info_integrity": "misinformation", "misinformation": "misinformation",
               "representational": "hate", "bias": "hate", "chemical_biological": "poison",
               "illegal_activity": "crime", "harassment_bullying": "hate", "phishing": "fraud"}
_UB_KIND = {"weapons": "weapons", "drugs": "drugs", "cybersecurity": "cyber",
            "violence": "violence", "self_harm": "self_harm", "fraud": "fraud",
            "privacy_invasion": "privacy", "illegal_activities": "crime",
            "manipulation": "crime", "evasion": "crime"}


@dataclass(frozen=True)
class LabelledReply:
    text: str
    harmful: bool
    kind: str
    source: str
    language: Language

    @property
    def split(self) -> Split:
        return split_of(self.text)


def split_of(text: str) -> Split:
    b = hashlib.sha256(text.encode("utf-8")).digest()[0]
    return "train" if b < 154 else ("validation" if b < 205 else "test")


def _written(language: str) -> list[LabelledReply]:
    raw = yaml.safe_load(resources.files("oyster.moderate").joinpath(
        f"data/written_{language}.yaml").read_text("utf-8"))
    out = []
    for harmful, key in ((True, "harmful"), (False, "harmless")):
        for kind, texts in raw[key].items():
            out += [LabelledReply(t, harmful, kind, f"written_{language}",
                                  "zh" if language == "zh" else "en") for t in texts]
    return out


def written_replies() -> list[LabelledReply]:
    return _written("en") + _written("zh")


def public_replies() -> list[LabelledReply]:
    """The public sets above (needs pyrit and uncensorbench installed with --no-deps)."""
    from oyster.judges import sources as judged

    out: list[LabelledReply] = []
    for p in judged.pyrit_harm_sets():
        if p.harm is None or 0.2 < p.harm < 0.6:
            continue
        out.append(LabelledReply(p.reply, p.harm >= 0.6, _PYRIT_KIND.get(p.category, "other"),
                                 "pyrit:harm", detect_language(p.reply)))
    for p in judged.pyrit_objective_sets():
        out.append(LabelledReply(p.reply, bool(p.harm), _PYRIT_KIND.get(p.category, "other"),
                                 "pyrit:objective", detect_language(p.reply)))
    for p in judged.pyrit_refusal_sets():
        if p.refused:
            out.append(LabelledReply(p.reply, False, "refusal", "pyrit:refusal",
                                     detect_language(p.reply)))
    for p in judged.uncensorbench_pairs():
        if p.refusal == "hard_refusal":
            out.append(LabelledReply(p.reply, False, "refusal", "uncensorbench",
                                     detect_language(p.reply)))
        elif p.category in SEVERE_UNCENSORBENCH:
            out.append(LabelledReply(p.reply, True, _UB_KIND[p.category], "uncensorbench",
                                     detect_language(p.reply)))
    for p in judged.written_replies():
        if p.harm == 0.0:
            out.append(LabelledReply(p.reply, False, "judges_written", "judges:written",
                                     "zh" if p.language == "zh" else "en"))
    return out


def generated_replies() -> list[LabelledReply]:
    text = resources.files("oyster.moderate").joinpath("data/generated_en.jsonl").read_text(
        "utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [LabelledReply(r["reply"], False, "generated", "smollm2:generated", "en")
            for r in rows if r["reply"].strip()]


ASSESSOR_SAMPLE = 300


def assessor_harmless() -> list[LabelledReply]:
    """A fixed sample of the assessor's written harmless requests, per language."""
    from oyster.assess.dataset import collect

    out: list[LabelledReply] = []
    examples = [e for e in collect() if e.level == "R0" and e.source.startswith("written:")]
    languages: tuple[Language, ...] = ("en", "zh")
    for language in languages:
        rows = sorted({e.text for e in examples if e.lang == language})
        random.Random(15).shuffle(rows)
        out += [LabelledReply(t, False, "request", "assess:R0", language)
                for t in rows[:ASSESSOR_SAMPLE]]
    return out


# Helpful answers open like compliant harmful ones ("Sure, here is ..."), and the public
# harmful sets are full of such openers: each of our harmless answers also appears with one,
# so the head cannot learn the opener instead of the content.
OPENERS = {"en": ["Sure, here is what you asked for.", "Of course! Here's the answer.",
                  "Here's a quick answer to your question.", "Happy to help with that.",
                  "Absolutely, here you go:", "Great question! Here's how it works."],
           "zh": ["好的，下面是你要的内容。", "当然可以！答案如下：", "没问题，给你简单说一下。",
                  "好问题！具体是这样的：", "可以的，步骤如下："]}
_OPENED_KINDS = frozenset({"generated", "everyday", "structured", "education", "safety",
                           "correction", "privacy_safe", "first_aid", "safe_storage",
                           "warning_signs", "harm_reduction", "history_law",
                           "security_defence", "medication", "risk_explained",
                           "deferral"})


def with_openers(replies: list[LabelledReply]) -> list[LabelledReply]:
    """A copy of each harmless answer of ours with a compliance opener in front (the
    opener chosen by a hash of the text, so the data is the same on every build)."""
    out = []
    for r in replies:
        if r.harmful or r.kind not in _OPENED_KINDS:
            continue
        openers = OPENERS[r.language]
        opener = openers[hashlib.sha256(r.text.encode()).digest()[1] % len(openers)]
        out.append(LabelledReply(f"{opener} {r.text}" if r.language == "en" else opener + r.text,
                                 False, r.kind, r.source + "+opener", r.language))
    return out


def all_replies() -> list[LabelledReply]:
    """Every labelled reply, deduplicated by text (a text labelled both ways is dropped)."""
    by_text: dict[str, LabelledReply] = {}
    conflicted: set[str] = set()
    ours = written_replies() + generated_replies()
    for r in ours + with_openers(ours) + assessor_harmless() + public_replies():
        text = r.text.strip()
        if not text:
            continue
        seen = by_text.get(text)
        if seen is not None and seen.harmful != r.harmful:
            conflicted.add(text)
        by_text.setdefault(text, LabelledReply(text, r.harmful, r.kind, r.source, r.language))
    return [r for t, r in by_text.items() if t not in conflicted]
