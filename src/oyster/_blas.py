"""Small matrix products on one BLAS thread.

The heads, the reply checks and the moderator multiply a few rows by matrices of a few
hundred columns, on the request path, while the encoder and other requests use the cores.
OpenBLAS's own pool of threads then spins against them: on this project's 2-core machine a
32-row pass of one of the assessor's heads took 155 ms with two BLAS threads and 1.3 ms
with one (#18). `one_blas_thread()` therefore holds the BLAS libraries loaded in the process
to one thread, once, before the first such product; it is not undone after each product,
because changing OpenBLAS's thread count while another thread is inside a BLAS call is
unsafe, and the proxy runs its checks on several threads. A program that sets
`OPENBLAS_NUM_THREADS`, `OMP_NUM_THREADS` or `MKL_NUM_THREADS` keeps its own setting.
"""

from __future__ import annotations

import os
import threading

__all__ = ["one_blas_thread"]

_USER_SETTINGS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_lock = threading.Lock()
_done = False


def one_blas_thread() -> None:
    """Hold the process's BLAS to one thread (the first call does it; later calls are a
    flag check)."""
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        _done = True
        if any(os.environ.get(k) for k in _USER_SETTINGS):
            return
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # an optional speed-up: without it, BLAS keeps its setting
            return
        threadpool_limits(limits=1, user_api="blas")
