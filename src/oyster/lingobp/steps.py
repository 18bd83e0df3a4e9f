"""Sync and async twins from one body of code.

Lingo-BP's loop (decide, respond, judge, edit, propagate) is written once, as a generator
that yields the calls it needs (`Call`, or a tuple of calls that may run together) and
receives their results. `run_steps` performs the calls one by one; `arun_steps` awaits
them, gathering a tuple concurrently. An exception raised by a call is thrown back into the
generator at the point that yielded it, so `try`/`except` in the loop works as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Call:
    """One call, in its sync and async form, with the same arguments."""

    sync: Callable[..., Any]
    async_: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...] = ()


Request = Call | tuple[Call, ...]
Steps = Generator[Request, Any, R]


def finished(value: R) -> Steps[R]:
    """Steps that need no calls: `value` at once."""
    yield from ()
    return value


def run_steps(steps: Steps[R]) -> R:
    """Drive `steps` synchronously and return its result."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            request = steps.throw(error) if error is not None else steps.send(result)
        except StopIteration as stop:
            return stop.value
        try:
            result, error = (tuple(c.sync(*c.args) for c in request)
                             if isinstance(request, tuple) else request.sync(*request.args)), None
        except Exception as e:  # handed back to the generator, which may handle it
            result, error = None, e


async def arun_steps(steps: Steps[R]) -> R:
    """Drive `steps` on the event loop; the calls of a tuple run concurrently."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            request = steps.throw(error) if error is not None else steps.send(result)
        except StopIteration as stop:
            return stop.value
        try:
            if isinstance(request, tuple):
                result = tuple(await asyncio.gather(*(c.async_(*c.args) for c in request)))
            else:
                result = await request.async_(*request.args)
            error = None
        except Exception as e:  # handed back to the generator, which may handle it
            result, error = None, e
