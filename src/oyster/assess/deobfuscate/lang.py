"""Is a recovered string language? Plausibility scores that decoders compare before and
after a transform (a real decode turns gibberish into words, never the other way).

- English: a word list with frequencies from the `wordsegment` package (Apache-2.0;
  dictionary words with their web counts, plus the most frequent web tokens so current
  words like "phishing" count), loaded once on first use (the largest table: load time in
  docs/deobfuscation.md).
- Chinese: the share of characters that fall inside multi-character dictionary words when
  `rjieba` segments the text without its HMM (unknown sequences stay single characters).
"""

from __future__ import annotations

import importlib.util
import math
import re
from functools import cache, lru_cache
from pathlib import Path

__all__ = ["CJK", "chinese_share", "cjk_count", "english_cost", "english_share", "is_word",
           "segment_letters"]

CJK = "\u4e00-\u9fff\u3400-\u4dbf"
_CJK_RE = re.compile(f"[{CJK}]")
_CJK_RUN = re.compile(f"[{CJK}]+")
_ALPHA = re.compile(r"[A-Za-z]+")
_TOP_WEB_TOKENS = 30_000  # web tokens taken without a dictionary check
_MAX_WORD = 20
_UNKNOWN_COST = 30.0  # per letter that no word covers


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def _english() -> dict[str, float]:
    """word -> cost (negative log frequency). Empty when `wordsegment` is missing, which
    leaves English plausibility at 0 (decoders then recover nothing in English)."""
    root = _package_dir("wordsegment")
    if root is None:
        return {}
    dictionary = set((root / "words.txt").read_text("utf-8").split())
    counts: dict[str, int] = {}
    with (root / "unigrams.txt").open(encoding="utf-8") as f:
        for rank, line in enumerate(f):
            word, _, count = line.partition("\t")
            if len(word) == 1 and word not in ("a", "i"):
                continue
            if rank < _TOP_WEB_TOKENS or word in dictionary:
                counts[word] = int(count)
    total = float(sum(counts.values()))
    return {w: math.log(total / c) for w, c in counts.items()}


def is_word(token: str) -> bool:
    return token.lower() in _english()


def english_cost(word: str) -> float | None:
    return _english().get(word.lower())


@lru_cache(maxsize=256)
def english_share(text: str) -> tuple[float, int]:
    """(share of the alphabetic tokens that are English words, number of tokens);
    one-letter tokens other than "a" and "I" are left out."""
    vocab = _english()
    tokens = [t.lower() for t in _ALPHA.findall(text)]
    tokens = [t for t in tokens if len(t) > 1 or t in ("a", "i")]
    if not tokens:
        return 0.0, 0
    return sum(1 for t in tokens if t in vocab) / len(tokens), len(tokens)


@lru_cache(maxsize=256)
def segment_letters(letters: str) -> tuple[tuple[str, ...], float]:
    """Best split of an unspaced letter string into English words (Viterbi over word
    costs), and its cost per letter: about 2-3.5 for English phrases, 5 and more for
    random letters. Letters are lower-cased; strings over 400 letters are not segmented
    (cost `inf`)."""
    s = letters.lower()
    n = len(s)
    if not n or n > 400:
        return (), math.inf
    vocab = _english()
    best = [0.0] + [math.inf] * n
    back = [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(max(0, end - _MAX_WORD), end):
            piece = s[start:end]
            cost = vocab.get(piece)
            if cost is None:
                if end - start > 1:
                    continue
                cost = _UNKNOWN_COST
            total = best[start] + cost
            if total < best[end]:
                best[end], back[end] = total, start
    words: list[str] = []
    end = n
    while end > 0:
        start = back[end]
        words.append(s[start:end])
        end = start
    words.reverse()
    return tuple(words), best[n] / n


def cjk_count(text: str) -> int:
    return len(_CJK_RE.findall(text))


@cache
def _jieba() -> object | None:
    try:
        import rjieba
    except ImportError:
        return None
    return rjieba


@lru_cache(maxsize=512)
def chinese_share(text: str) -> float:
    """Share of the CJK characters of `text` that sit inside multi-character dictionary
    words, two-character words weighted by how common they are (full weight from about
    1,000 uses in rjieba's dictionary, half at about 30): natural Chinese scores about
    0.6-1.0; reversed or scrambled text much lower, even where it happens to form rare words
    ("友朋")."""
    seg = _jieba()
    if seg is None:
        return 0.0
    total = 0
    inside = 0.0
    for run in _CJK_RUN.findall(text):
        total += len(run)
        for word in seg.cut(run, False):  # type: ignore[attr-defined]
            if len(word) > 2:  # long entries (idioms, set phrases) rarely form by chance
                inside += len(word)
            elif len(word) == 2:
                inside += 2 * min(1.0, math.log10(1 + char_frequency(word)) / 3)
    return inside / total if total else 0.0


@lru_cache(maxsize=8192)
def char_frequency(ch: str) -> int:
    """How common a Chinese character or word is (rjieba's dictionary count; 0 if unknown)."""
    seg = _jieba()
    if seg is None:
        return 0
    try:
        return int(seg.suggest_freq(ch))  # type: ignore[attr-defined]
    except Exception:  # rjieba raises on some odd input
        return 0


def has_word(word: str) -> bool:
    seg = _jieba()
    return bool(seg is not None and seg.has_word(word))  # type: ignore[attr-defined]
