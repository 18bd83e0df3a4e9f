"""Memoisation helpers.

`memo_by_identity`: a function of immutable objects, by their identity. Frozen pydantic
models holding lists are not hashable, so `functools.cache` cannot key on them; this keeps
the argument objects alive with the result so their ids stay unique.

`memo_by_text`: a function of one text, whose result one decision asks for several times
(a turn's attack scan, harm cue, encoder pieces); texts over `MEMO_TEXT_CHARS` are computed
each time, so the cache never holds a huge input.

`WordMemo`: the tokenizers' words and their pieces, bounded by the characters of the words
it keeps rather than by their number (a Chinese paragraph is one word).
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


class WordMemo:
    """Words and their pieces, bounded by the characters of the words kept (a Chinese
    paragraph is one word): when full, it starts afresh."""

    def __init__(self, max_chars: int = 2_000_000) -> None:
        self.max_chars = max_chars
        self._pieces: dict[str, tuple[int, ...]] = {}
        self._chars = 0

    def get(self, word: str) -> tuple[int, ...] | None:
        return self._pieces.get(word)

    def put(self, word: str, pieces: tuple[int, ...]) -> None:
        if self._chars + len(word) > self.max_chars:
            self._pieces.clear()
            self._chars = 0
        self._pieces[word] = pieces
        self._chars += len(word)

    def __len__(self) -> int:
        return len(self._pieces)
