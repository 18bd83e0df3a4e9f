"""Small numeric functions the learned heads (assessor, judges, moderator) share."""

from __future__ import annotations

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the row maximum so large logits do not overflow."""
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function; logits clipped to ±40, where it is 0 or 1 to float precision."""
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
