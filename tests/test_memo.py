"""`oyster._memo.memo_by_text`: a text's result is computed once while it stays in the
cache, and a text over the size bound is computed every time (never held)."""

from __future__ import annotations

from oyster._memo import MEMO_TEXT_CHARS, memo_by_text


def test_a_text_is_computed_once_and_a_huge_one_every_time() -> None:
    calls: list[str] = []

    def length(text: str) -> int:
        calls.append(text)
        return len(text)

    memo = memo_by_text(length, maxsize=2)
    assert memo("abc") == memo("abc") == 3
    assert calls == ["abc"]
    huge = "x" * (MEMO_TEXT_CHARS + 1)
    assert memo(huge) == memo(huge) == MEMO_TEXT_CHARS + 1
    assert calls == ["abc", huge, huge]
    memo("d"), memo("e")  # two newer texts push "abc" out of a cache of two
    memo("abc")
    assert calls[-1] == "abc" and calls.count("abc") == 2
