"""Small linear heads on embedding features, trained and stored with numpy only.

A `LinearHead` is a softmax regression (or, with one output and soft targets, a logistic
regression) over standardised features. It is saved as one `.npz` file holding the
weights, the standardisation and the class names, so loading it needs nothing but numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oyster._numeric import sigmoid, softmax
from oyster.errors import JudgeError


class LinearHead:
    """`classes` names the outputs; a single class means a probability of that class
    (binary, trained on soft targets in [0, 1])."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, mean: np.ndarray,
                 scale: np.ndarray, classes: list[str]) -> None:
        self.weights, self.bias, self.mean, self.scale = weights, bias, mean, scale
        self.classes = classes

    @property
    def binary(self) -> bool:
        return len(self.classes) == 1

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        x = (np.atleast_2d(features) - self.mean) / self.scale
        z = x @ self.weights + self.bias
        return sigmoid(z)[:, 0] if self.binary else softmax(z)

    @classmethod
    def fit(cls, features: np.ndarray, targets: np.ndarray, classes: list[str],
            l2: float = 1.0, steps: int = 600, lr: float = 0.05,
            sample_weight: np.ndarray | None = None) -> LinearHead:
        """Full-batch Adam on the (weighted) cross-entropy plus `l2`·|W|²/n.

        `targets`: class indices (softmax) or probabilities in [0, 1] (one class)."""
        x = np.asarray(features, dtype=np.float64)
        n, d = x.shape
        mean = x.mean(axis=0)
        scale = x.std(axis=0) + 1e-6
        x = (x - mean) / scale
        k = len(classes)
        if k == 1:
            y = np.asarray(targets, dtype=np.float64).reshape(-1, 1)
        else:
            y = np.zeros((n, k))
            y[np.arange(n), np.asarray(targets, dtype=int)] = 1.0
        w_s = (np.ones(n) if sample_weight is None else np.asarray(sample_weight, float))
        w_s = (w_s / w_s.mean())[:, None]
        weights = np.zeros((d, k))
        bias = np.zeros(k)
        m_w, v_w = np.zeros_like(weights), np.zeros_like(weights)
        m_b, v_b = np.zeros_like(bias), np.zeros_like(bias)
        b1, b2, eps = 0.9, 0.999, 1e-8
        for t in range(1, steps + 1):
            z = x @ weights + bias
            p = sigmoid(z) if k == 1 else softmax(z)
            g = (p - y) * w_s / n
            g_w = x.T @ g + 2 * l2 * weights / n
            g_b = g.sum(axis=0)
            m_w = b1 * m_w + (1 - b1) * g_w
            v_w = b2 * v_w + (1 - b2) * g_w**2
            m_b = b1 * m_b + (1 - b1) * g_b
            v_b = b2 * v_b + (1 - b2) * g_b**2
            corr1, corr2 = 1 - b1**t, 1 - b2**t
            weights -= lr * (m_w / corr1) / (np.sqrt(v_w / corr2) + eps)
            bias -= lr * (m_b / corr1) / (np.sqrt(v_b / corr2) + eps)
        return cls(weights.astype(np.float32), bias.astype(np.float32),
                   mean.astype(np.float32), scale.astype(np.float32), list(classes))

    def save(self, path: Path) -> None:
        np.savez_compressed(path, weights=self.weights, bias=self.bias, mean=self.mean,
                            scale=self.scale, classes=np.array(self.classes))

    @classmethod
    def load(cls, path: Path) -> LinearHead:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(data["weights"], data["bias"], data["mean"], data["scale"],
                           [str(c) for c in data["classes"]])
        except (OSError, KeyError, ValueError) as e:
            raise JudgeError(f"cannot load judge head {path}: {e}") from e
