"""Batch work on a Ray cluster: an ordered map over a pool of actors.

    pool = RayPool(connect("local", workers=2), DecideWorker(policy=None, assessor="local"))
    for outputs in pool.map(chunks):        # one list of outputs per chunk, in input order
        ...
    pool.close()

Each actor builds its worker once from a picklable factory (an engine, a backend, judges:
the part that is slow to load) and then handles chunks of items. Results come back in the
order the chunks went in, whatever order the actors finish them, so a run on Ray writes
the same file as a run in one process; at most a few chunks per actor are in flight or
waiting to be written, so memory stays flat on inputs of any length.

Addresses (`--ray ADDRESS` of `oyster decide`, `bench`, `lingobp run`):
- `local`: start a Ray instance on this machine (`--ray-workers` CPUs);
- `auto`: join the cluster this machine is part of (`ray start` ran here);
- `ray://HOST:10001` (Ray Client) or `HOST:6379` (the head's GCS): a remote cluster.
Every node needs the same Oyster installed (and its packaged models): workers import it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from oyster.embeddings import ENCODER_THREADS_ENV
from oyster.errors import InputError, OysterError

T = TypeVar("T")
R = TypeVar("R")

Worker = Callable[[list[Any]], list[Any]]
"""Handles one chunk: a list of items in, a list of results (same length) out."""


class RayError(OysterError):
    """Ray is missing, a cluster cannot be reached, or a worker failed."""


def connect(address: str, workers: int | None = None) -> int:
    """Start or join Ray (once per process); the number of workers to use: `workers`, or
    every CPU the cluster has."""
    try:
        import ray
    except ImportError as e:
        raise RayError("--ray needs the ray package (pip install 'oyster-csa[ray]')") from e
    if workers is not None and workers < 1:
        raise InputError("--ray-workers must be at least 1")
    if not ray.is_initialized():
        try:
            if address == "local":
                ray.init(num_cpus=workers, include_dashboard=False,
                         logging_level=logging.WARNING, log_to_driver=False)
            else:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except Exception as e:  # ConnectionError, ValueError for a malformed address, ...
            raise RayError(f"--ray {address}: cannot start or reach Ray: {e}") from None
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return workers or max(1, cpus)


class _Actor:
    def __init__(self, factory: Callable[[], Worker]) -> None:
        # an actor holds one CPU: its encodes never spread over the machine's other cores
        os.environ[ENCODER_THREADS_ENV] = "1"
        self.worker = factory()

    def run(self, chunk: list[Any]) -> list[Any]:
        return self.worker(chunk)


class RayPool(Generic[T, R]):
    """`workers` actors, each running `factory()` once; see the module docstring."""

    def __init__(self, workers: int, factory: Callable[[], Worker],
                 ahead_per_worker: int = 3) -> None:
        import ray

        remote: Any = ray.remote(num_cpus=1, max_restarts=0)(_Actor)
        self._actors: list[Any] = [remote.remote(factory) for _ in range(workers)]
        self._ahead = max(2, ahead_per_worker * workers)

    def map(self, chunks: Iterable[list[T]]) -> Iterator[list[R]]:
        """Each chunk's results, in the order of `chunks`."""
        import ray

        source = iter(chunks)
        free = list(self._actors)
        in_flight: dict[Any, tuple[int, Any]] = {}  # ref -> (chunk index, actor)
        finished: dict[int, list[R]] = {}
        submitted = emitted = 0
        exhausted = False
        while True:
            while free and not exhausted and submitted - emitted < self._ahead:
                chunk = next(source, None)
                if chunk is None:
                    exhausted = True
                    break
                actor = free.pop()
                in_flight[actor.run.remote(chunk)] = (submitted, actor)
                submitted += 1
            if emitted in finished:
                yield finished.pop(emitted)
                emitted += 1
                continue
            if not in_flight:
                return
            [ready], _ = ray.wait(list(in_flight), num_returns=1)
            index, actor = in_flight.pop(ready)
            try:
                finished[index] = ray.get(ready)
            except Exception as e:  # RayTaskError, RayActorError: the worker's own message
                raise RayError(f"a Ray worker failed on chunk {index}: {e}") from None
            free.append(actor)

    def close(self) -> None:
        import ray

        for actor in self._actors:
            ray.kill(actor)
        self._actors = []


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
