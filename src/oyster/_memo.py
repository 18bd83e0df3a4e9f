"""Memoisation helpers.

`memo_by_identity`: a function of immutable objects, by their identity. Frozen pydantic
models holding lists are not hashable, so `functools.cache` cannot key on them; this keeps
the argument objects alive with the result so their ids stay unique.

`memo_by_text`: a function of one text, whose result one decision asks for several times
(a turn's attack scan, harm cue, encoder pieces); texts over `MEMO_TEXT_CHARS` are computed
each time, so the cache never holds a huge input.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any, TypeVar

R = TypeVar("R")

MAX_ENTRIES = 64  # a process sees few policies; bound the cache anyway
MEMO_TEXT_CHARS = 20_000


def memo_by_identity(fn: Callable[..., R]) -> Callable[..., R]:
    store: dict[tuple[int, ...], tuple[tuple[Any, ...], R]] = {}

    @wraps(fn)
    def wrapper(*args: Any) -> R:
        key = tuple(id(a) for a in args)
        hit = store.get(key)
        if hit is not None and all(x is y for x, y in zip(hit[0], args, strict=True)):
            return hit[1]
        result = fn(*args)
        if len(store) >= MAX_ENTRIES:
            store.clear()
        store[key] = (args, result)
        return result

    return wrapper


def memo_by_text(fn: Callable[[str], R], maxsize: int = 256) -> Callable[[str], R]:
    """`fn` remembered for the last `maxsize` texts of at most `MEMO_TEXT_CHARS` characters
    (its result must be immutable: every caller gets the same object)."""
    cached = lru_cache(maxsize=maxsize)(fn)

    @wraps(fn)
    def wrapper(text: str) -> R:
        return cached(text) if len(text) <= MEMO_TEXT_CHARS else fn(text)

    return wrapper
