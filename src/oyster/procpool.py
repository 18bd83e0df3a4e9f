"""Batch work on this machine's cores: an ordered map over a pool of processes.

    pool = ProcessPool(2, DecideWorker(policy=None, assessor="local"))
    for outputs in pool.map(chunks):        # one list of outputs per chunk, in input order
        ...
    pool.close()

The same contract as `raypool.RayPool` without a Ray cluster (`oyster decide --workers N`):
each process builds its worker once from a picklable factory (the engine: the part that is
slow to load) and then handles chunks; results come back in input order, and at most a few
chunks per process are in flight, so memory stays flat on inputs of any length. Processes
are started with `spawn`: a forked copy of a parent that already holds torch/ONNX threads
can hang.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Generic, TypeVar

from oyster.embeddings import worker_encoder_env
from oyster.errors import InputError, OysterError
from oyster.raypool import Worker

T = TypeVar("T")
R = TypeVar("R")

_worker: Worker | None = None  # this process's worker, built once by _start
_start_error: Exception | None = None  # why it could not be built (told on the first chunk)


class WorkerPoolError(OysterError):
    """A worker process failed or died."""


def _start(factory: Callable[[], Worker], env: dict[str, str]) -> None:
    global _worker, _start_error
    os.environ.update(env)
    try:
        _worker = factory()
    except Exception as e:  # raised here it would only kill the process, message lost
        _start_error = e


def _run(chunk: list[Any]) -> list[Any]:
    if _worker is None:
        raise _start_error or WorkerPoolError("the worker was not built")
    return _worker(chunk)


class ProcessPool(Generic[T, R]):
    """`workers` processes, each running `factory()` once; see the module docstring."""

    def __init__(self, workers: int, factory: Callable[[], Worker],
                 ahead_per_worker: int = 3) -> None:
        if workers < 1:
            raise InputError("--workers must be at least 1")
        self._executor = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start, initargs=(factory, worker_encoder_env(workers)))
        self._ahead = max(2, ahead_per_worker * workers)

    def map(self, chunks: Iterable[list[T]]) -> Iterator[list[R]]:
        """Each chunk's results, in the order of `chunks`."""
        pending: deque[Future[list[R]]] = deque()
        source = iter(chunks)
        while True:
            while len(pending) < self._ahead:
                chunk = next(source, None)
                if chunk is None:
                    break
                pending.append(self._executor.submit(_run, chunk))
            if not pending:
                return
            try:
                yield pending.popleft().result()
            except BrokenProcessPool as e:
                raise WorkerPoolError(f"a worker process died: {e}") from None

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
