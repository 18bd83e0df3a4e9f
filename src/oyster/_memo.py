"""Memoise a function of immutable objects by their identity.

Frozen pydantic models holding lists are not hashable, so `functools.cache` cannot key on
them; this keeps the argument objects alive with the result so their ids stay unique.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

R = TypeVar("R")

MAX_ENTRIES = 64  # a process sees few policies; bound the cache anyway


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
