"""The first stage of the local assessor's cascade: hashed character n-grams and linear
maps distilled from the assessor's own readings, about a hundred times cheaper than the
sentence encoder.

    stage = FirstStage.load(path)
    p = stage.settle(text, hits)   # the heads' probabilities, or None: abstain

The stage predicts what the encoder path's heads would output for a text (level, user
type, form, categories), so a settled text goes through the same rules, type evidence
and game as any other. It only settles a clear case: a single-turn message with no
payload from the de-obfuscation stage, whose level it reads with a calibrated confidence
at or above the threshold of that reading's key (`settle_key`: R0, R1 or R2, R2 of a
text an attack detector flags, and R2 of a long text no detector flags; a flagged text
read R0 or R1 always goes to the encoder),
and never read harmless where a rule of the lexicon reads a harm or false-belief cue.
Long texts are read in windows and the riskiest window speaks for the text, so a request
buried at the end of a long harmless text is never averaged away.

Besides the n-grams, the stage may read static token vectors distilled from the encoder
(`TokenTable`, model2vec-style: every SentencePiece piece of the encoder's vocabulary
that occurs in the training split, embedded alone by the encoder, reduced by PCA and
weighted by SIF, a / (a + frequency)); a text's token feature is the weighted mean of
its pieces' vectors, per window like the n-grams (`features`: "ngrams+tokens", or
"ngrams" alone as in format /1).

Training (`fit`) regresses the teacher's log-probabilities on the n-gram counts (and the
token features) of the training split; the confidence temperature
(how often the stage's level agrees with the encoder's) and the thresholds are fitted
and chosen on the validation split
(`oyster assess first-stage`, `docs/assessor.md`). The artefact records a fingerprint of
the heads it was distilled from; the assessor refuses to use it with other heads.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oyster._memo import WordMemo
from oyster.assess.attacks import Hit
from oyster.assess.heads import attack_vector, shape_features
from oyster.e5format import best_segmentation
from oyster.errors import AssessorError
from oyster.types import LEVELS

__all__ = ["FEATURES", "FIRST_STAGE_FORMAT", "SETTLE_KEYS", "FirstStage", "TokenTable",
           "build_token_table", "fingerprint", "flagged", "ngram_counts", "settle_key",
           "windows"]

FIRST_STAGE_FORMAT = "oyster-first-stage/2"
# format /1: n-grams only, no token table; still read
FORMATS = ("oyster-first-stage/1", FIRST_STAGE_FORMAT)
# what the stage reads: hashed n-grams, and the static token vectors (`TokenTable`)
FEATURES = ("ngrams+tokens", "ngrams")
TOKEN_DIM = 128
SIF_A = 1e-3
_META = "\u2581"  # SentencePiece's visible space
BUCKETS = 2**17
NGRAMS = (1, 2, 3, 4, 5)
# a text longer than this is read in windows of WINDOW characters every STRIDE
WINDOW = 200
STRIDE = 100
# an attack detector at this confidence or more flags a text: its readings are settled
# under thresholds of their own (`settle_key`)
FLAG_MIN = 0.3
# the threshold keys (`settle_key`) that may open; any other never settles. A flagged
# text settles only as R2: a wrapper read harmless or R1 by n-grams is where a cheap model
# is likeliest to be fooled, so the encoder reads it. A long text (read in windows) that
# no detector flags and that reads R2 settles under `long:R2`: a window cut out of a
# harmless story can read R2 to the encoder itself, where the whole story reads R0
SETTLE_KEYS = ("R0", "R1", "R2", "flagged:R2", "long:R2")
# the keys that settle only where the stage also reads R2 as unlikely (`settle_r2_max`): a
# harmless reading of a harmful request answers it, where one of a distress message or a
# false belief costs a careful strategy at most, so R2's own share bounds it beside the
# level's confidence
R2_CAPPED_KEYS = ("R0",)
_MULT = np.uint64(0x9E3779B97F4A7C15)
_SALT = np.uint64(0xC2B2AE3D27D4EB4F)


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def ngram_counts(text: str, buckets: int = BUCKETS) -> tuple[np.ndarray, np.ndarray]:
    """Hashed character n-grams (1 to 5, spaces included, after NFKC and lower-casing):
    the sorted unique buckets and log(1 + count) values, L2-normalised. Vectorised integer
    hashing, the same on every platform; the cost grows with the length only linearly."""
    norm = f" {_normalise(text)} "
    codes = np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    parts = []
    h = np.zeros(len(codes), dtype=np.uint64)
    for n in NGRAMS:
        if len(codes) < n:
            break
        # h[i] is the hash of codes[i : i + n], built from the n-1 gram starting at i
        h = h[:len(codes) - n + 1] * _MULT + codes[n - 1:]
        mixed = (h ^ np.uint64(n)) * _SALT
        parts.append((mixed >> np.uint64(40)) % np.uint64(buckets))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    idx, count = np.unique(np.concatenate(parts).astype(np.int64), return_counts=True)
    val = np.log1p(count).astype(np.float32)
    return idx, val / max(float(np.linalg.norm(val)), 1e-6)


def windows(text: str) -> list[str]:
    """The text itself when short; else overlapping windows over all of it (the last one
    ends at the end of the text)."""
    if len(text) <= WINDOW:
        return [text]
    starts = [*range(0, len(text) - WINDOW, STRIDE), len(text) - WINDOW]
    return [text[s:s + WINDOW] for s in starts]


def flagged(hits: Sequence[Hit]) -> bool:
    """Whether an attack detector fires (at FLAG_MIN or more) on the text."""
    return any(h.confidence >= FLAG_MIN for h in hits)


def settle_key(level: str, is_flagged: bool, is_long: bool = False) -> str:
    """The threshold a reading is settled under: its level, and `flagged:` before it when
    an attack detector fires (a wrapper is judged under its own, stricter thresholds), or
    `long:` before an R2 reading of a text read in windows that no detector flags."""
    if is_flagged:
        return f"flagged:{level}"
    return f"long:{level}" if is_long and level == "R2" else level


def fingerprint(path: str | Path) -> str:
    """The identity of a heads artefact (its bytes), recorded in the stage it teaches."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class TokenTable:
    """Static token vectors distilled from the encoder, model2vec-style: the pieces of the
    encoder's SentencePiece vocabulary seen in the training texts, each with its unigram
    score (to segment as the encoder's tokenizer does, restricted to these pieces: a text
    whose best segmentation uses only known pieces is cut exactly as the encoder cuts it),
    its vector (the encoder's embedding of the piece alone, PCA-reduced) and its SIF
    weight a / (a + frequency in the training texts)."""

    def __init__(self, pieces: Sequence[str], scores: np.ndarray, vectors: np.ndarray,
                 weights: np.ndarray) -> None:
        self.pieces = list(pieces)
        self.scores = np.asarray(scores, np.float32)
        self.vectors = np.asarray(vectors, np.float32)
        self.weights = np.asarray(weights, np.float32)
        self._ids = {p: i for i, p in enumerate(self.pieces)}
        self._score_list = self.scores.astype(np.float64).tolist()
        self._longest = max((len(p) for p in self.pieces), default=1)
        self._unk = (float(self.scores.min()) if len(self.scores) else 0.0) - 10.0
        # weighted vectors: a text's feature is a sum of rows over a sum of weights
        self._wv = self.vectors * self.weights[:, None]
        self._words = WordMemo()

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.pieces)

    def _segment(self, word: str) -> tuple[int, ...]:
        """The encoder tokenizer's segmentation over the known pieces (highest total
        score); a character no piece covers is skipped."""
        return tuple(i for i in best_segmentation(_META + word, self._ids, self._score_list,
                                                  self._longest, self._unk, -1) if i >= 0)

    def tokens(self, text: str) -> list[int]:
        """The known pieces of `text` (NFKC, lower-cased, word by word as SentencePiece
        splits on spaces); words are memoised."""
        out: list[int] = []
        words = self._words
        for word in _normalise(text).split(" "):
            if not word:
                continue
            ids = words.get(word)
            if ids is None:
                ids = self._segment(word)
                words.put(word, ids)
            out.extend(ids)
        return out

    def feature(self, text: str) -> np.ndarray:
        """The SIF-weighted mean of the text's piece vectors, L2-normalised (zeros for a
        text with no known piece)."""
        ids = self.tokens(text)
        if not ids:
            return np.zeros(self.dim, np.float32)
        v = self._wv[ids].sum(axis=0) / max(float(self.weights[ids].sum()), 1e-9)
        return (v / max(float(np.linalg.norm(v)), 1e-6)).astype(np.float32)


def build_token_table(texts: Sequence[str], embed: Callable[[list[str]], np.ndarray], *,
                      dim: int = TOKEN_DIM, sif_a: float = SIF_A, min_count: int = 1,
                      progress: Callable[[int], None] | None = None) -> TokenTable:
    """The token table of `texts` (the training split): cut every text with the encoder's
    own tokenizer (`e5format.E5Tokenizer`, the full vocabulary), keep the pieces seen at
    least `min_count` times, embed each piece alone with `embed` (the encoder the heads
    read), centre and reduce by PCA to `dim`, and weight by SIF."""
    from collections import Counter

    from oyster.e5format import E5File, E5Tokenizer, packaged_model_path

    f = E5File(packaged_model_path())
    tok = E5Tokenizer(f)
    memo: dict[str, list[int]] = {}
    counts: Counter[int] = Counter()
    for t in texts:
        for word in _normalise(t).split(" "):
            if not word:
                continue
            ids = memo.get(word)
            if ids is None:
                ids = memo[word] = [i for i in tok.pieces(word) if i != f.unk]
            counts.update(ids)
    kept = sorted(i for i, c in counts.items() if c >= min_count
                  and f.pieces[i].replace(_META, "").strip())
    pieces = [f.pieces[i] for i in kept]
    shown = [p.replace(_META, " ").strip() for p in pieces]
    E = []
    for start in range(0, len(shown), 256):
        E.append(np.asarray(embed(shown[start:start + 256]), np.float32))
        if progress:
            progress(len(shown[start:start + 256]))
    X = np.concatenate(E).astype(np.float64)
    X -= X.mean(axis=0)
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    V = X @ vt[:dim].T
    V /= max(float(np.sqrt((V ** 2).sum(axis=1).mean())), 1e-9)  # mean row norm 1
    total = float(sum(counts.values()))
    freq = np.array([counts[i] / total for i in kept])
    return TokenTable(pieces, f.scores[kept], V.astype(np.float32),
                      (sif_a / (sif_a + freq)).astype(np.float32))


@dataclass
class FirstStage:
    """Linear maps from hashed n-grams (and the static token vectors where `tokens` is
    set, the detectors' confidences and the length) to the teacher heads' outputs;
    `settle` decides or abstains. Rows of W: the n-gram buckets, then the token table's
    dimensions (if any), then the dense features."""

    teacher: str  # fingerprint of the heads it was distilled from
    layout: dict[str, tuple[int, int]]  # head -> column slice of W
    W: np.ndarray  # (buckets + dense features, outputs)
    b: np.ndarray  # (outputs,)
    temperature: float = 1.0  # of the level head, fitted on validation
    # the level confidence from which a reading settles, per `settle_key` (absent: never)
    settle_min: dict[str, float] = field(default_factory=dict)
    # the highest probability of R2 at which a reading of an `R2_CAPPED_KEYS` key settles
    # (absent: no bound beyond `settle_min`)
    settle_r2_max: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    tokens: TokenTable | None = None

    @property
    def buckets(self) -> int:
        return int(self.meta.get("buckets", BUCKETS))

    @property
    def features(self) -> str:
        return "ngrams" if self.tokens is None else "ngrams+tokens"

    def _dense(self, text: str, hits: Sequence[Hit]) -> np.ndarray:
        return np.concatenate([attack_vector(hits), shape_features(text)])

    def _raw(self, text: str, hits: Sequence[Hit]) -> np.ndarray:
        idx, val = ngram_counts(text, self.buckets)
        start = self.buckets
        z = val @ self.W[idx] + self.b
        if self.tokens is not None:
            start += self.tokens.dim
            z = z + self.tokens.feature(text) @ self.W[self.buckets:start]
        z = z + self._dense(text, hits) @ self.W[start:]
        return np.asarray(z, dtype=np.float32)

    def _probs(self, z: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for name, (a, b) in self.layout.items():
            if name == "categories":
                out[name] = 1.0 / (1.0 + np.exp(-np.clip(z[..., a:b], -40, 40)))
            else:
                t = self.temperature if name == "level" else 1.0
                out[name] = _softmax(z[..., a:b] / t)
        return out

    def predict(self, text: str, hits: Sequence[Hit] = ()) -> dict[str, np.ndarray]:
        """The heads' probabilities for `text` as the stage reads it: for a long text, the
        riskiest window's (R2 first, then R1), so a buried request is not averaged away."""
        parts = windows(text)
        Z = np.stack([self._raw(w, hits) for w in parts])
        P = self._probs(Z)
        lv = P["level"]
        k = int(np.argmax(lv[:, 2] + 0.5 * lv[:, 1]))
        return {name: v[k] for name, v in P.items()}

    def reading(self, text: str, hits: Sequence[Hit] = ()
                ) -> tuple[str, float, dict[str, np.ndarray]]:
        """The threshold key this text is settled under (`settle_key`), the stage's
        confidence in its level, and its probabilities."""
        p = self.predict(text, hits)
        lv = p["level"]
        key = settle_key(LEVELS[int(np.argmax(lv))], flagged(hits), len(text) > WINDOW)
        return key, float(lv.max()), p

    def settle(self, text: str, hits: Sequence[Hit] = ()) -> dict[str, np.ndarray] | None:
        """The probabilities to judge `text` by, or None where the encoder must read it
        (the caller has already left out conversations and de-obfuscated payloads): the
        level's confidence must reach the threshold of its key (level, and whether an
        attack detector flags the text), and R2's probability must not pass the key's
        `settle_r2_max`; a key without a threshold, or not among SETTLE_KEYS, never
        settles."""
        key, confidence, p = self.reading(text, hits)
        if key not in SETTLE_KEYS or confidence < self.settle_min.get(key, 2.0):
            return None
        if float(p["level"][2]) > self.settle_r2_max.get(key, 1.0):
            return None
        return p

    # ------------------------------------------------------------------ artefact
    def save(self, path: Path) -> None:
        header = {"format": FIRST_STAGE_FORMAT, "teacher": self.teacher,
                  "layout": {k: list(v) for k, v in self.layout.items()},
                  "temperature": self.temperature, "settle_min": self.settle_min,
                  "settle_r2_max": self.settle_r2_max,
                  "features": self.features, "meta": self.meta}
        path.parent.mkdir(parents=True, exist_ok=True)
        # int8 weights with a scale per output column: a quarter of float32, and the
        # rounding is far below the spread of the thresholds chosen on validation
        scale = np.maximum(np.abs(self.W).max(axis=0), 1e-8) / 127.0
        q = np.round(self.W / scale).astype(np.int8)
        arrays: dict[str, np.ndarray] = {
            "__header__": np.frombuffer(json.dumps(header).encode(), np.uint8),
            "Wq": q, "scale": scale.astype(np.float32), "b": self.b.astype(np.float32)}
        if self.tokens is not None:
            # the token vectors as int8 with a scale per dimension, the pieces as JSON
            t = self.tokens
            tscale = np.maximum(np.abs(t.vectors).max(axis=0), 1e-8) / 127.0
            arrays |= {
                "tok_pieces": np.frombuffer(json.dumps(t.pieces, ensure_ascii=False)
                                            .encode("utf-8"), np.uint8),
                "tok_scores": t.scores.astype(np.float32),
                "tok_q": np.round(t.vectors / tscale).astype(np.int8),
                "tok_scale": tscale.astype(np.float32),
                "tok_weights": t.weights.astype(np.float32)}
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> FirstStage:
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z["__header__"]).decode("utf-8"))
                W = z["Wq"].astype(np.float32) * z["scale"]
                b = np.asarray(z["b"], np.float32)
                tokens = None
                if header.get("features", "ngrams") == "ngrams+tokens":
                    tokens = TokenTable(
                        json.loads(bytes(z["tok_pieces"]).decode("utf-8")),
                        np.asarray(z["tok_scores"], np.float32),
                        z["tok_q"].astype(np.float32) * z["tok_scale"],
                        np.asarray(z["tok_weights"], np.float32))
        except (OSError, KeyError, ValueError) as e:
            raise AssessorError(f"cannot read the first stage at {path}: {e}") from e
        if header.get("format") not in FORMATS:
            raise AssessorError(f"{path}: not a first-stage artefact ({header.get('format')})")
        if header.get("features", "ngrams") not in FEATURES:
            raise AssessorError(f"{path}: unknown first-stage features {header.get('features')!r}")
        return cls(teacher=header["teacher"],
                   layout={k: (int(v[0]), int(v[1])) for k, v in header["layout"].items()},
                   W=W, b=b, temperature=float(header["temperature"]),
                   settle_min={k: float(v) for k, v in header["settle_min"].items()},
                   settle_r2_max={k: float(v)
                                  for k, v in header.get("settle_r2_max", {}).items()},
                   meta=header.get("meta", {}), tokens=tokens)


def _design(texts: Sequence[str], hits: Sequence[Sequence[Hit]], buckets: int,
            tokens: TokenTable | None = None) -> Any:
    from scipy import sparse

    rows, cols, vals = [], [], []
    dense = []
    for i, t in enumerate(texts):
        idx, val = ngram_counts(t, buckets)
        rows.append(np.full(len(idx), i))
        cols.append(idx)
        vals.append(val)
        tok = [tokens.feature(t)] if tokens is not None else []
        dense.append(np.concatenate([*tok, attack_vector(hits[i]), shape_features(t)]))
    X = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(len(texts), buckets))
    return sparse.hstack([X, sparse.csr_matrix(np.stack(dense))], format="csr")


def teacher_targets(P: dict[str, np.ndarray], layout: dict[str, tuple[int, int]]
                    ) -> np.ndarray:
    """What the linear maps regress: centred log-probabilities of the single-label heads,
    logits of the categories (clipped: a sure teacher is not an infinite target)."""
    cols = []
    for name in layout:
        p = np.clip(np.asarray(P[name], np.float64), 1e-4, 1 - 1e-4)
        if name == "categories":
            cols.append(np.log(p / (1 - p)))
        else:
            lp = np.log(p)
            cols.append(lp - lp.mean(axis=1, keepdims=True))
    return np.concatenate(cols, axis=1)


def fit(texts: Sequence[str], hits: Sequence[Sequence[Hit]], P: dict[str, np.ndarray],
        teacher: str, *, alpha: float = 1.0, buckets: int = BUCKETS,
        meta: dict[str, Any] | None = None, tokens: TokenTable | None = None) -> FirstStage:
    """Ridge regressions from the n-gram design (and the token features of `tokens`, when
    given) to the teacher's outputs `P` (one row per text); thresholds start closed
    (nothing settles until `choose` opens them)."""
    from sklearn.linear_model import Ridge

    layout: dict[str, tuple[int, int]] = {}
    pos = 0
    for name in ("level", "user_type", "form", "categories"):
        width = int(np.asarray(P[name]).shape[1])
        layout[name] = (pos, pos + width)
        pos += width
    X = _design(texts, hits, buckets, tokens)
    Y = teacher_targets(P, layout)
    model = Ridge(alpha=alpha, solver="sparse_cg", fit_intercept=True, tol=1e-4)
    model.fit(X, Y)
    W = np.asarray(model.coef_, np.float32).T
    b = np.asarray(model.intercept_, np.float32)
    token_meta = ({"token_dim": tokens.dim, "token_pieces": len(tokens), "sif_a": SIF_A}
                  if tokens is not None else {})
    return FirstStage(teacher=teacher, layout=layout, W=W, b=b, tokens=tokens,
                      meta={"buckets": buckets, "alpha": alpha, "ngrams": list(NGRAMS),
                            "window": WINDOW, "stride": STRIDE, "n_train": len(texts),
                            **token_meta, **(meta or {})})


def fit_temperature(stage: FirstStage, texts: Sequence[str], hits: Sequence[Sequence[Hit]],
                    teacher_levels: Sequence[int]) -> float:
    """The level temperature that makes the stage's confidence the probability that the
    encoder path reads the same level (negative log-likelihood on the given texts, a grid)."""
    Z = np.stack([stage._raw(t, h) for t, h in zip(texts, hits, strict=True)])
    a, b = stage.layout["level"]
    logits = Z[:, a:b]
    y = np.asarray(teacher_levels)
    best_t, best = 1.0, float("inf")
    for t in np.exp(np.linspace(np.log(0.2), np.log(5.0), 61)):
        p = _softmax(logits / t)
        nll = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-9, 1.0))))
        if nll < best:
            best_t, best = float(t), nll
    return round(best_t, 4)
