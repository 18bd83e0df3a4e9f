"""Small matrix products on one BLAS thread.

The heads, the reply checks and the moderator multiply a few rows by matrices of a few
hundred columns, on the request path, while the encoder and other requests use the cores.
OpenBLAS's own pool of threads then spins against them: on this project's 2-core machine a
32-row pass of one of the assessor's heads took 155 ms with two BLAS threads and 1.3 ms with one
(#18). `one_blas_thread()` holds the BLAS libraries to one thread for the `with` block and
restores their setting after it, so a program around Oyster keeps its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

__all__ = ["one_blas_thread"]

_lock = threading.Lock()
_controller: Any = None


def _get_controller() -> Any:
    global _controller
    with _lock:
        if _controller is None:
            try:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            except ImportError:  # an optional speed-up: without it, BLAS keeps its setting
                _controller = False
        return _controller


@contextmanager
def one_blas_thread() -> Iterator[None]:
    controller = _get_controller()
    with controller.limit(limits=1, user_api="blas") if controller else nullcontext():
        yield
