"""`oyster._memo.memo_by_text`: a text's result is computed once while it stays in the
cache, and a text over the size bound is computed every time (never held); the
tokenizers' word memo (`WordMemo`) is bounded by the characters it keeps."""

from __future__ import annotations

from oyster._memo import MEMO_TEXT_CHARS, WordMemo, memo_by_text


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


def test_the_word_memo_is_bounded_by_the_characters_it_keeps() -> None:
    memo = WordMemo(max_chars=10)
    memo.put("abcd", (1, 2))
    memo.put("efgh", (3,))
    assert memo.get("abcd") == (1, 2) and len(memo) == 2
    memo.put("ijklmn", (4,))  # 14 characters would be kept: it starts afresh
    assert memo.get("abcd") is None and memo.get("ijklmn") == (4,) and len(memo) == 1
