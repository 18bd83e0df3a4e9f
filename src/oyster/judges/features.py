"""What the local judges read from a (query, reply) pair: text with judge-addressed
sentences removed, embeddings of the reply, its lead and the query, and surface cues.

Settings (patterns, cue phrases, thresholds) come from `data/local_judges.yaml`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from oyster._packaged import packaged_data
from oyster.embeddings import Embedder
from oyster.errors import JudgeError
from oyster.judges.base import REFUSAL_TYPES, RefusalType
from oyster.types import REACTIONS, Language, Reaction, Strategy, detect_language

CJK = re.compile(r"[\u4e00-\u9fff]")
WORD = re.compile(r"[A-Za-z0-9']+|[\u4e00-\u9fff]")
CUE_KINDS = ("empathy", "judgmental", "help_offer", "resource")


class SatisfactionThresholds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_words_informative: int
    min_units_informative: int
    max_words_uninformative: int
    repetition_bad: float
    blunt_refusal_words: int


class SafetyThresholds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    safe_below: float
    unsafe_from: float
    refusal_confidence: float
    refusal_harm_cap: float


class LocalJudgeSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    embedder: str
    judge_addressed: list[str]
    sentence_end: str
    lead_sentences: int
    cues: dict[str, dict[Language, list[str]]]
    satisfaction: SatisfactionThresholds
    safety: SafetyThresholds
    strategy_of: dict[RefusalType, Strategy]
    suggestions: dict[Literal["unsafe", "mostly_safe", "safe_hard_refusal", "safe"], str]
    user_profile: str
    next_turn: dict[Reaction, str]


@dataclass(frozen=True)
class CompiledSettings:
    raw: LocalJudgeSettings
    judge_addressed: re.Pattern[str]
    sentence_end: re.Pattern[str]
    cues: dict[str, dict[Language, re.Pattern[str]]]


def _alternation(patterns: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


@cache
def settings() -> CompiledSettings:
    """The packaged local-judge settings, validated and compiled once."""
    data = packaged_data("oyster.judges", "data/local_judges.yaml", JudgeError)
    try:
        raw = LocalJudgeSettings.model_validate(data)
        missing = [k for k in CUE_KINDS if k not in raw.cues]
        missing += [k for k in ("unsafe", "mostly_safe", "safe_hard_refusal", "safe")
                    if k not in raw.suggestions]
        missing += [k for k in REFUSAL_TYPES if k not in raw.strategy_of]
        missing += [k for k in REACTIONS if k not in raw.next_turn]
        if missing:
            raise ValueError(f"missing entries: {missing}")
        cues = {kind: {lang: _alternation(
            [rf"\b(?:{p})" if lang == "en" else p for p in pats]) for lang, pats in by_lang.items()}
            for kind, by_lang in raw.cues.items()}
        return CompiledSettings(raw, _alternation(raw.judge_addressed),
                                re.compile(raw.sentence_end), cues)
    except (ValueError, re.error) as e:
        raise JudgeError(f"local_judges.yaml: invalid settings: {e}") from e


def sentences(text: str) -> list[str]:
    return [s.strip() for s in settings().sentence_end.split(text) if s and s.strip()]


def strip_judge_addressed(text: str) -> tuple[str, int]:
    """Cut text that speaks to the judge: from where a judge-addressed pattern starts to the
    end of its sentence (what comes before it in the sentence stays). Returns the rest and
    how many cuts were made."""
    kept, dropped = [], 0
    pattern = settings().judge_addressed
    for s in sentences(text):
        m = pattern.search(s)
        if m:
            dropped += 1
            s = s[:m.start()].strip()
        if s:
            kept.append(s)
    return " ".join(kept), dropped


def word_count(text: str) -> float:
    """Words, counting CJK characters at 1.5 per word."""
    words = WORD.findall(text)
    cjk = sum(1 for w in words if CJK.match(w))
    return (len(words) - cjk) + cjk / 1.5


def repetition(text: str) -> float:
    """Share of word trigrams that repeat an earlier trigram (0 = none repeat)."""
    words = [w.lower() for w in WORD.findall(text)]
    grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def cue_hits(kind: str, text: str, language: Language) -> int:
    pattern = settings().cues[kind].get(language) or settings().cues[kind]["en"]
    return len(pattern.findall(text))


def query_text(query: Any) -> str:
    """The last user message of a conversation (or the string itself)."""
    if isinstance(query, str):
        return query
    for m in reversed(list(query)):
        role = m.get("role") if isinstance(m, dict) else m.role
        content = m.get("content") if isinstance(m, dict) else m.content
        if role == "user":
            return str(content or "")
    return ""


@dataclass(frozen=True)
class PairText:
    """A (query, reply) pair as the local judges read it."""

    query: str
    reply: str
    lead: str
    dropped: int
    language: Language

    @classmethod
    def of(cls, query: str, reply: str) -> PairText:
        clean_reply, dropped_r = strip_judge_addressed(reply)
        clean_query, dropped_q = strip_judge_addressed(query)
        lead = " ".join(sentences(clean_reply)[: settings().raw.lead_sentences])
        return cls(clean_query, clean_reply, lead, dropped_r + dropped_q,
                   detect_language(clean_query + " " + clean_reply))


class Featurizer:
    """Embeds pairs with one `oyster.embeddings` embedder and builds the head inputs."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)

    def pair_embeddings(self, pairs: Sequence[PairText]) -> dict[str, np.ndarray]:
        n = len(pairs)
        flat = self.embed([p.reply for p in pairs] + [p.lead for p in pairs]
                          + [p.query for p in pairs])
        return {"reply": flat[:n], "lead": flat[n:2 * n], "query": flat[2 * n:]}

    @staticmethod
    def refusal_features(emb: dict[str, np.ndarray], pairs: Sequence[PairText]) -> np.ndarray:
        length = np.array([[np.log1p(word_count(p.reply))] for p in pairs], dtype=np.float32)
        return np.hstack([emb["reply"], emb["lead"], length])

    @staticmethod
    def safety_features(emb: dict[str, np.ndarray], pairs: Sequence[PairText]) -> np.ndarray:
        length = np.array([[np.log1p(word_count(p.reply))] for p in pairs], dtype=np.float32)
        return np.hstack([emb["reply"], emb["lead"], emb["query"], length])

    @staticmethod
    def relevance(emb: dict[str, np.ndarray]) -> np.ndarray:
        return np.sum(emb["reply"] * emb["query"], axis=1)
