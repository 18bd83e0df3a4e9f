"""Micro-batching: concurrent assessments in one event loop share one `assess_many` call.

The proxy assesses each request on its own; under concurrency the encoder then runs once
per request, and on a busy CPU its per-call overhead dominates (benchmarks/encoder_batching.py,
#18). A `MicroBatcher` holds each `aassess` call for at most `window_s`, or until
`max_batch` calls wait, and runs the assessor once on all of them in a worker thread. A
lone request waits the window and no more; `window_s = 0` is not a batcher (the engine
then calls the assessor directly).

The batch runs outside any request's context: the per-request work budget (time,
embeddings) does not apply to the shared call, as for `Engine.decide_many`; the size
limits were checked on each request before it got here. If the batched call raises, each
conversation is assessed alone, so one bad input fails only its own request.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence

from oyster.assess.base import Assessment, Assessor
from oyster.types import Message

Waiting = tuple[Sequence[Message], "asyncio.Future[Assessment]"]


class MicroBatcher:
    """Gathers `aassess` calls for `window_s` seconds (see the module docstring)."""

    def __init__(self, assessor: Assessor, window_s: float, max_batch: int = 32) -> None:
        if window_s <= 0 or max_batch < 1:
            raise ValueError("a micro-batcher needs window_s > 0 and max_batch >= 1")
        self.assessor = assessor
        self.window_s = window_s
        self.max_batch = max_batch
        self.batches = 0  # shared calls made (the proxy's tests count them)
        self._waiting: list[Waiting] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def aassess(self, messages: Sequence[Message]) -> Assessment:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Assessment] = loop.create_future()
        self._waiting.append((messages, result))
        if len(self._waiting) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.window_s, self._flush)
        return await result

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._waiting = self._waiting, []
        if batch:
            # an empty context: no request's budget or span governs the shared call
            task = asyncio.get_running_loop().create_task(self._run(batch),
                                                          context=contextvars.Context())
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[Waiting]) -> None:
        self.batches += 1
        conversations = [messages for messages, _ in batch]
        try:
            assessments = await asyncio.to_thread(self.assessor.assess_many, conversations)
        except Exception:  # find whose input it was: each alone
            for messages, result in batch:
                try:
                    one = await asyncio.to_thread(self.assessor.assess, messages)
                except Exception as e:
                    _settle(result, error=e)
                else:
                    _settle(result, one)
            return
        for (_, result), assessment in zip(batch, assessments, strict=True):
            _settle(result, assessment)


def _settle(result: asyncio.Future[Assessment], value: Assessment | None = None,
            error: BaseException | None = None) -> None:
    if result.done():  # the request went away meanwhile
        return
    if error is not None:
        result.set_exception(error)
    else:
        assert value is not None
        result.set_result(value)
