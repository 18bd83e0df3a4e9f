"""Small classification heads on sentence embeddings, with inference in numpy.

Features of one text = its embedding ⊕ the attack detectors' confidences ⊕ a length
feature. Four heads read them:
- `level` (R0/R1/R2) and `user_type` (benign/vulnerable/misinformed/malicious): an
  ensemble of networks with one hidden ReLU layer whose logits are averaged (or
  multinomial logistic regression with `hidden=0`), trained balanced over (language,
  class) cells, temperature-scaled on a validation split so the probabilities are
  calibrated;
- `form` (statement/question/instruction): multinomial logistic regression, temperature
  scaled;
- `categories`: one-vs-rest logistic regression per policy category (multi-label), each
  with its own Platt scaling.

Artefacts are one `.npz` of float32 arrays plus a JSON header (labels, embedder spec,
training metadata): loading reads arrays, never unpickles, and does not depend on the
scikit-learn version. Training (`fit_heads`) needs scikit-learn; inference does not.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oyster._blas import one_blas_thread
from oyster._numeric import sigmoid, softmax
from oyster.assess.attacks import Hit, scan_text
from oyster.errors import AssessorError
from oyster.types import ATTACK_TECHNIQUES, FORMS, LEVELS, USER_TYPES

__all__ = ["HEADS_FORMAT", "Heads", "attack_vector", "balanced_weights", "fit_heads",
           "shape_features"]

HEADS_FORMAT = 1


def attack_vector(hits: Sequence[Hit]) -> np.ndarray:
    vec = np.zeros(len(ATTACK_TECHNIQUES), dtype=np.float32)
    for h in hits:
        i = ATTACK_TECHNIQUES.index(h.technique)
        vec[i] = max(vec[i], h.confidence)
    return vec


# Length counts up to this many characters: beyond it a message is a pasted document, a
# story or notes, and its length says nothing about harm (in our training data nearly every
# text over 1,000 characters was an attack, and heads learnt length as evidence; #18)
LENGTH_FEATURE_CAP = 300


def shape_features(text: str) -> np.ndarray:
    """Log length (to `LENGTH_FEATURE_CAP`), and a constant slot kept for the artefact
    layout. The language itself is deliberately not a feature: heads must not learn a
    per-language prior, so what they learn from the larger English sets carries over to
    Chinese through the multilingual embedding."""
    return np.array([math.log1p(min(len(text), LENGTH_FEATURE_CAP)) / 10.0, 0.0],
                    dtype=np.float32)


def extra_features(text: str, hits: Sequence[Hit] | None = None) -> np.ndarray:
    hits = scan_text(text) if hits is None else hits
    return np.concatenate([attack_vector(hits), shape_features(text)])


_Fused = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _fused_mlp(arrays: dict[str, np.ndarray], name: str) -> _Fused:
    """An ensemble of one-hidden-layer networks (weights stacked on a leading member axis; a
    single network is an ensemble of one) as one wider network: the members' first matrices
    side by side, their second ones stacked and divided by their number, so its logits are
    the members' mean in two products instead of two per member."""
    W1, b1 = arrays[f"{name}.W1"], arrays[f"{name}.b1"]
    W2, b2 = arrays[f"{name}.W2"], arrays[f"{name}.b2"]
    if W1.ndim == 2:
        W1, b1, W2, b2 = W1[None], b1[None], W2[None], b2[None]
    members, d, h = W1.shape
    return (np.ascontiguousarray(W1.transpose(1, 0, 2)).reshape(d, members * h),
            b1.reshape(-1), W2.reshape(members * h, -1) / members, b2.mean(axis=0))


def _mlp_logits(fused: _Fused, X: np.ndarray) -> np.ndarray:
    W1, b1, W2, b2 = fused
    return np.maximum(X @ W1 + b1, 0.0) @ W2 + b2


@dataclass
class Heads:
    """Loaded heads: `predict(X)` gives calibrated probabilities for every head."""

    embedder: str
    labels: dict[str, list[str]]
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    _fused: dict[str, _Fused] = field(default_factory=dict, init=False, repr=False)

    @property
    def categories(self) -> list[str]:
        return self.labels["categories"]

    def _multi(self, name: str, X: np.ndarray) -> np.ndarray:
        T = float(self.arrays[f"{name}.T"][0])
        if f"{name}.W1" in self.arrays:  # networks with one hidden layer (ReLU)
            fused = self._fused.get(name)
            if fused is None:
                fused = self._fused[name] = _fused_mlp(self.arrays, name)
            return softmax(_mlp_logits(fused, X) / T)
        W, b = self.arrays[f"{name}.W"], self.arrays[f"{name}.b"]
        return softmax((X @ W.T + b) / T)

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        X = (np.asarray(X, dtype=np.float32) - self.arrays["x.mean"]) / self.arrays["x.scale"]
        one_blas_thread()
        out = {name: self._multi(name, X) for name in ("level", "user_type", "form")}
        W, b = self.arrays["categories.W"], self.arrays["categories.b"]
        a, c = self.arrays["categories.a"], self.arrays["categories.c"]
        out["categories"] = sigmoid(a * (X @ W.T + b) + c)
        return out

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"format": HEADS_FORMAT, "embedder": self.embedder, "labels": self.labels,
                  "meta": self.meta}
        # ensemble weights (stacked per member) in half precision: half the size, and the
        # mean over members is far coarser than float16 rounding
        arrays = {k: v.astype(np.float16 if v.ndim == 3 else np.float32)
                  for k, v in self.arrays.items()}
        arrays["__header__"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> Heads:
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z["__header__"]).decode("utf-8"))
                arrays = {k: np.asarray(z[k], dtype=np.float32) for k in z.files
                          if k != "__header__"}
        except (OSError, KeyError, ValueError) as e:
            raise AssessorError(f"cannot load assessor heads from {path}: {e}") from e
        if header.get("format") != HEADS_FORMAT:
            raise AssessorError(f"{path}: heads format {header.get('format')} is not "
                                f"{HEADS_FORMAT}; rebuild with `oyster assess train`")
        return cls(embedder=header["embedder"], labels=header["labels"], arrays=arrays,
                   meta=header.get("meta", {}))


# ------------------------------------------------------------------------------ training
def balanced_weights(cells: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Row weights under which every cell (e.g. a language x class pair) weighs the same in
    total: `base` scaled by n / (number of cells x the cell's total `base`)."""
    _, inv = np.unique(cells, return_inverse=True)
    counts = np.bincount(inv, weights=base)
    return base * len(cells) / (len(counts) * counts[inv])


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    best, best_nll = 1.0, float("inf")
    for T in np.exp(np.linspace(math.log(0.25), math.log(4.0), 41)):
        p = softmax(logits / T)
        nll = -float(np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-9))))
        if nll < best_nll:
            best, best_nll = float(T), nll
    return best


def _fit_platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Scale and shift of one logit on held-out data (Newton steps on the log-loss)."""
    a, c = 1.0, 0.0
    if y.min() == y.max():
        return a, c
    for _ in range(50):
        p = sigmoid(a * z + c)
        g_a = float(np.sum((p - y) * z)) + 1e-3 * (a - 1)
        g_c = float(np.sum(p - y))
        w = p * (1 - p)
        h_aa = float(np.sum(w * z * z)) + 1e-3
        h_ac = float(np.sum(w * z))
        h_cc = float(np.sum(w)) + 1e-6
        det = h_aa * h_cc - h_ac * h_ac
        if abs(det) < 1e-12:
            break
        da = (h_cc * g_a - h_ac * g_c) / det
        dc = (h_aa * g_c - h_ac * g_a) / det
        a, c = a - da, c - dc
        if abs(da) + abs(dc) < 1e-6:
            break
    a, c = min(max(a, 0.05), 3.0), float(np.clip(c, -10.0, 10.0))

    def nll(a_: float, c_: float) -> float:
        q = np.clip(sigmoid(a_ * z + c_), 1e-9, 1 - 1e-9)
        return -float(np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

    # keep the fit only if it really is better than the head's own scale on held-out data
    return (a, c) if nll(a, c) < nll(1.0, 0.0) else (1.0, 0.0)


def _fit_mlp(name: str, Z: np.ndarray, y: np.ndarray, train: np.ndarray, valid: np.ndarray,
             k: int, seed: int, hidden: int, groups: np.ndarray | None = None,
             members: int = 1, row_weight: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """`members` networks from different seeds (initialisation and minibatch order);
    their mean logits are temperature-scaled together on `valid`."""
    from sklearn.neural_network import MLPClassifier

    # balanced over (group, class) cells, groups being e.g. languages
    g = groups[train] if groups is not None else np.zeros(len(train), dtype=np.int64)
    base = row_weight[train] if row_weight is not None else np.ones(len(train))
    weight = balanced_weights(g * k + y[train], base)
    stacked: dict[str, list[np.ndarray]] = {"W1": [], "b1": [], "W2": [], "b2": []}
    for m in range(members):
        # trained until the weighted training loss settles: sklearn's early stopping scores
        # plain accuracy on a random tenth of the rows, which ignores the class and per-ask
        # weights and stopped the networks early (validation split: docs/assessor.md)
        clf = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=1e-3, max_iter=200,
                            n_iter_no_change=8, random_state=seed + m)
        clf.fit(Z[train], y[train], sample_weight=weight)
        W2 = np.full((hidden, k), 0.0, dtype=np.float32)
        b2 = np.full(k, -30.0, dtype=np.float32)
        if len(clf.classes_) == 2:  # one logistic output: split it into two logits
            for sign, cls in ((-0.5, clf.classes_[0]), (0.5, clf.classes_[1])):
                W2[:, cls] = sign * clf.coefs_[1][:, 0]
                b2[cls] = sign * clf.intercepts_[1][0]
        else:
            for col, cls in enumerate(clf.classes_):
                W2[:, cls] = clf.coefs_[1][:, col]
                b2[cls] = clf.intercepts_[1][col]
        stacked["W1"].append(clf.coefs_[0].astype(np.float32))
        stacked["b1"].append(clf.intercepts_[0].astype(np.float32))
        stacked["W2"].append(W2)
        stacked["b2"].append(b2)
    arrays = {f"{name}.{key}": np.stack(v) for key, v in stacked.items()}
    T = _fit_temperature(_mlp_logits(_fused_mlp(arrays, name), Z[valid]), y[valid])
    arrays[f"{name}.T"] = np.array([T], dtype=np.float32)
    return arrays


def fit_heads(
    X: np.ndarray, y: dict[str, np.ndarray], cat_mask: np.ndarray, train: np.ndarray,
    valid: np.ndarray, *, embedder: str, categories: list[str], seed: int = 0,
    C: float = 1.0, meta: dict[str, Any] | None = None,
    mlp: dict[str, int] | None = None, groups: np.ndarray | None = None, members: int = 1,
    row_weight: np.ndarray | None = None,
) -> Heads:
    """Fit all heads on rows `train`, calibrate on rows `valid`.

    `y` holds integer labels for `level`, `user_type`, `form` and a 0/1 matrix for
    `categories`; `cat_mask` marks rows whose categories are known. `mlp` names heads
    fitted as a one-hidden-layer network (head -> hidden units) instead of a linear model,
    as an ensemble of `members` networks: single networks trained on the same data disagree
    a lot on requests unlike the training data, their mean is steadier.
    """
    from sklearn.linear_model import LogisticRegression

    mlp = mlp or {}
    X = np.asarray(X, dtype=np.float32)
    mean = X[train].mean(axis=0)
    scale = X[train].std(axis=0) + 1e-6
    Z = (X - mean) / scale
    arrays: dict[str, np.ndarray] = {"x.mean": mean, "x.scale": scale}
    labels: dict[str, list[str]] = {"level": list(LEVELS), "user_type": list(USER_TYPES),
                                    "form": list(FORMS), "categories": list(categories)}
    for name in ("level", "user_type", "form"):
        k = len(labels[name])
        if name in mlp:
            arrays.update(_fit_mlp(name, Z, y[name], train, valid, k, seed, mlp[name],
                                   groups, members=members, row_weight=row_weight))
            continue
        clf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced", random_state=seed)
        clf.fit(Z[train], y[name][train])
        W = np.zeros((k, Z.shape[1]), dtype=np.float32)
        b = np.full(k, -30.0, dtype=np.float32)  # classes never seen stay impossible
        for row, cls in enumerate(clf.classes_):
            if len(clf.classes_) == 2:  # binary sklearn model: expand to two rows
                W[cls] = clf.coef_[0] * (1 if row == 1 else -1) / 2
                b[cls] = clf.intercept_[0] * (1 if row == 1 else -1) / 2
            else:
                W[cls], b[cls] = clf.coef_[row], clf.intercept_[row]
        T = _fit_temperature(Z[valid] @ W.T + b, y[name][valid])
        arrays[f"{name}.W"], arrays[f"{name}.b"] = W, b
        arrays[f"{name}.T"] = np.array([T], dtype=np.float32)
    Y = y["categories"]
    rows = train[cat_mask[train]]
    vrows = valid[cat_mask[valid]]
    Wc = np.zeros((len(categories), Z.shape[1]), dtype=np.float32)
    bc = np.full(len(categories), -8.0, dtype=np.float32)
    ac = np.ones(len(categories), dtype=np.float32)
    cc = np.zeros(len(categories), dtype=np.float32)
    for j in range(len(categories)):
        yj = Y[rows, j]
        if yj.sum() < 3:
            continue
        clf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced", random_state=seed)
        clf.fit(Z[rows], yj)
        Wc[j], bc[j] = clf.coef_[0], clf.intercept_[0]
        z = Z[vrows] @ Wc[j] + bc[j]
        ac[j], cc[j] = _fit_platt(z.astype(np.float64), Y[vrows, j].astype(np.float64))
    arrays.update({"categories.W": Wc, "categories.b": bc, "categories.a": ac,
                   "categories.c": cc})
    return Heads(embedder=embedder, labels=labels, arrays=arrays, meta=meta or {})
