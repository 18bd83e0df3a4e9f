"""Training the heads: per-ask weighting (no embedder needed: features are synthetic), and
the embedding cache it reads and writes."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from oyster.assess.dataset import Example
from oyster.assess.heads import LENGTH_FEATURE_CAP, fit_heads, shape_features
from oyster.assess.train import _save, ask_weights, load_cache


def _ex(group: str, level: str) -> Example:
    return Example(text=group, lang="en", level=level, user_type="benign", categories=[],
                   form="question", source="t", group=group)


def test_every_distinct_ask_weighs_one_however_many_variants_it_has() -> None:
    examples = [_ex("a", "R2")] * 4 + [_ex("b", "R2"), _ex("b", "R0"), _ex("c", "R0")]
    w = ask_weights(examples)
    assert np.allclose(w, [0.25] * 4 + [1, 1, 1])  # a harmless twin in the group counts alone


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 120 rows
def test_a_network_head_fits_when_only_two_of_its_classes_occur() -> None:
    # sklearn gives one logistic output for two classes; the head still reports three
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(-2, 0.3, (60, 2)), rng.normal(2, 0.3, (60, 2))].astype(np.float32)
    level = np.r_[np.zeros(60, dtype=int), np.full(60, 2)]
    y = {"level": level, "user_type": np.where(level == 2, 3, 0),
         "form": np.arange(120) % 2, "categories": np.zeros((120, 1), dtype=int)}
    idx = np.arange(120)
    heads = fit_heads(X, y, np.zeros(120, dtype=bool), idx, idx, embedder="t",
                      categories=["c"], mlp={"level": 8, "user_type": 8}, members=2,
                      row_weight=np.ones(120))
    p = heads.predict(np.array([[-2, -2], [2, 2]], dtype=np.float32))["level"]
    assert p.shape == (2, 3) and p[:, 1].max() < 1e-6  # R1 never seen: impossible
    assert p[0, 0] > 0.9 and p[1, 2] > 0.9


def test_writers_of_one_embedding_cache_at_once_leave_a_file_that_loads(tmp_path) -> None:
    path = tmp_path / "emb-hash.npz"
    errors: list[BaseException] = []

    def write(seed: int) -> None:
        rng = np.random.default_rng(seed)
        store = {f"k{i}": rng.standard_normal(64).astype(np.float32) for i in range(400)}
        try:
            for _ in range(15):
                _save(path, store)
        except BaseException as e:  # a thread's failure is reported by the test
            errors.append(e)

    threads = [threading.Thread(target=write, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(load_cache(tmp_path, "hash")) == 400
    assert not list(tmp_path.glob("*.tmp.npz"))


def test_length_counts_only_up_to_the_cap() -> None:
    # a pasted document is not more harmful for being long: past the cap, length is constant
    at_cap = shape_features("x" * LENGTH_FEATURE_CAP)
    assert np.array_equal(shape_features("x" * (LENGTH_FEATURE_CAP * 20)), at_cap)
    assert shape_features("x" * (LENGTH_FEATURE_CAP // 3))[0] < at_cap[0]
