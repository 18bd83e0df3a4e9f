"""Decoders for letter- and order-level tampering: doubled or tripled characters, reversed
text or word order, letters scrambled inside words, and acrostics (first letters or
characters of lines, sentences or words). Each is written from what the technique is:
the transform leaves text that is not language, and undoing it gives language back."""

from __future__ import annotations

import re
from functools import cache
from itertools import groupby

from oyster.assess.deobfuscate.base import Decoded, Decoder, register, segments
from oyster.assess.deobfuscate.lang import (
    CJK,
    chinese_share,
    cjk_count,
    english_share,
    segment_letters,
)
from oyster.assess.deobfuscate.lang import _english as english_vocab

_MAX_TEXT = 4000  # letter-level decoders look at the first 4,000 characters only
_WORD_RUN = re.compile(r"\w+")
_CJK_CHAR = re.compile(f"[{CJK}]")
# ------------------------------------------------------------------------ doubled characters
_PAIRS = {2: re.compile(r"(\w)\1(\w)\2"), 3: re.compile(r"(\w)\1\1(\w)\2\2")}

def _fold_runs(token: str, k: int, loose: bool = False) -> tuple[str, int]:
    """Collapse the stretches of `token` where every run of one character has a length
    divisible by `k` (and at least `k`): whole tokens of two or more runs ("bboomm"), or
    stretches of three or more runs inside a longer one (Chinese has no spaces); with
    `loose` (most of the text is folded already) any such stretch ("aa"). Returns the
    folded token and how many characters were folded away."""
    runs = [(ch, len(list(g))) for ch, g in groupby(token)]
    folded: list[str] = []
    removed = 0
    i = 0
    while i < len(runs):
        j = i
        while j < len(runs) and runs[j][1] >= k and runs[j][1] % k == 0:
            j += 1
        stretch = j - i
        whole = i == 0 and j == len(runs)
        if stretch >= 3 or (whole and stretch >= 2) or (loose and stretch >= 1):
            for ch, n in runs[i:j]:
                folded.append(ch * (n // k))
                removed += n - n // k
            i = j
            continue
        ch, n = runs[i]
        folded.append(ch * n)
        i += 1
    return "".join(folded), removed


@register
class DoubledCharacters(Decoder):
    """Every character (or every word) written two or three times: "hhooww ttoo", "怎怎么么"."""

    name = "doubled_chars"
    technique = "char_split"

    def decode(self, text: str) -> list[Decoded]:
        body = text[:_MAX_TEXT]
        out = [d for k in (2, 3) if (d := self._chars(body, k)) is not None]
        out += [d for k in (2, 3) if (d := self._words(body, k)) is not None]
        return sorted(out, key=lambda d: -d.confidence)[:1]

    def _chars(self, text: str, k: int) -> Decoded | None:
        if not _PAIRS[k].search(text):  # no two multiplied characters in a row anywhere
            return None
        first = self._fold(text, k, loose=False)
        if first is None or first[1] < 0.6:
            return first[0] if first else None
        second = self._fold(text, k, loose=True)
        return second[0] if second else first[0]

    def _fold(self, text: str, k: int, loose: bool) -> tuple[Decoded, float] | None:
        pieces: list[str] = []
        word_chars = 0
        removed = 0
        folded_tokens = 0
        last = 0
        for m in _WORD_RUN.finditer(text):
            token = m.group(0)
            word_chars += len(token)
            if not loose and (not _PAIRS[k].search(token) or any(ch.isdigit() for ch in token)):
                continue  # numbers and hex colours ("ff8800") double digits anyway
            new, gone = _fold_runs(token, k, loose)
            if gone:
                folded_tokens += 1
                removed += gone
                pieces.append(text[last:m.start()])
                pieces.append(new)
                last = m.end()
        if not removed:
            return None
        pieces.append(text[last:])
        share = removed * k / (k - 1) / max(word_chars, 1)  # share of word characters folded
        if share < 0.15 and folded_tokens < 2:
            return None
        result = "".join(pieces)
        if share >= 0.8:  # the spaces and punctuation were multiplied too
            result = re.sub(r"(\W)\1+", lambda m: m.group(1) * max(1, len(m.group(0)) // k), result)
        conf = 0.3 + 0.6 * min(1.0, share) + (0.1 if folded_tokens >= 2 else 0.0)
        return self.found(result, conf, f"{'doubled' if k == 2 else 'tripled'} characters "
                          f"({min(1.0, share):.0%} of the letters)"), share

    def _words(self, text: str, k: int) -> Decoded | None:
        words = text.split()
        if len(words) < 3 * k:
            return None
        kept: list[str] = []
        grouped = 0
        i = 0
        while i < len(words):
            group = words[i:i + k]
            if len(group) == k and len({w.lower() for w in group}) == 1:
                kept.append(group[0])
                grouped += k
                i += k
            else:
                kept.append(words[i])
                i += 1
        share = grouped / len(words)
        if share < 0.8 or grouped < 3 * k:
            return None
        return self.found(" ".join(kept), 0.45 + 0.45 * share,
                          f"every word written {k} times ({share:.0%} of the words)")


# ------------------------------------------------------------------------------- reversal
_REVERSE_CUE = re.compile(r"\b(backwards?|revers\w*|mirror\w*|right to left|end to start)\b|"
                          "倒着|倒序|反过来|反着|从右(往|到)左|从后(往|到)前|逆序", re.IGNORECASE)
def _words(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


_OPENERS = _words("how what why where when which who can could would should please write tell "
                  "give explain describe show list make create help teach find")
# the second word of an ask that starts with an opener ("how to", "tell me", "write a")
_SECOND = _words("to do does did can could would should will is are was me us a an the you i "
                 "much many my your some it")
_FUNCTION = _words("a an the to of for in on at by with from and or but my your his her its our "
                   "their this that these those me you it is are be")
_EN_TOKEN = re.compile(r"[A-Za-z']+")


def _word_order_reversed(segment: str) -> str | None:
    """The segment with its words in reverse order, when the reversed order reads as an
    English ask and the given order does not (it ends on an opener such as "how")."""
    words = _EN_TOKEN.findall(segment)
    if len(words) < 4:
        return None
    low = [w.lower() for w in words]
    if (low[0] in _OPENERS or low[0] in _FUNCTION or low[0] == "i" or low[-1] not in _OPENERS
            or low[-2] not in _SECOND):
        return None
    share, _ = english_share(segment)
    if share < 0.8:
        return None
    flipped = " ".join(reversed(words))
    return flipped[0].upper() + flipped[1:] + ("?" if segment.rstrip().endswith("?")
                                               or segment.lstrip().startswith("?") else "")


@register
class ReversedText(Decoder):
    """Text written backwards, character by character ("bmob a ekam", "药炸造制"), or with
    its words in reverse order ("bomb a make to how")."""

    name = "reversed"
    technique = "encoding"

    def decode(self, text: str) -> list[Decoded]:
        body = text[:_MAX_TEXT]
        cue = 0.1 if _REVERSE_CUE.search(body) else 0.0
        out: list[Decoded] = []
        for segment, span in segments(body):
            d = self._characters(segment, span, cue) or self._words(segment, span, cue)
            if d is not None:
                out.append(d)
        return sorted(out, key=lambda d: -d.confidence)[:2]

    def _characters(self, seg: str, span: tuple[int, int] | None, cue: float) -> Decoded | None:
        flipped = seg[::-1]
        cjk = cjk_count(seg)
        if cjk >= 4:
            before, after = chinese_share(seg), chinese_share(flipped)
            gain = after - before
            if (after >= 0.5 and gain >= 0.35) or (after >= 0.8 and gain >= 0.25):
                return self.found(flipped, 0.45 + 0.5 * gain + cue, f"reversed characters "
                                  f"(words {before:.0%} → {after:.0%})", span)
            return None
        before, n = english_share(seg)
        if n < 3 or before > 0.6:
            return None
        after, _ = english_share(flipped)
        gain = after - before
        if after >= 0.75 and gain >= 0.4:
            return self.found(flipped, 0.45 + 0.5 * gain + cue,
                              f"reversed letters (words {before:.0%} → {after:.0%})", span)
        return None

    def _words(self, seg: str, span: tuple[int, int] | None, cue: float) -> Decoded | None:
        if cjk_count(seg):
            return None
        flipped = _word_order_reversed(seg)
        if flipped is None:
            return None
        return self.found(flipped, 0.55 + 2 * cue, "words in reverse order", span)


# ----------------------------------------------------------------- letters scrambled in words
@cache
def _anagrams() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Indexes over English words, the most frequent word winning each key:
    (first + last + sorted middle -> word, sorted letters -> word) for words of four letters
    or more, and sorted letters -> word for the 3,000 most frequent two- and three-letter
    words (short tokens are trusted only among those)."""
    vocab = english_vocab()
    ends: dict[str, str] = {}
    bag: dict[str, str] = {}
    short: dict[str, str] = {}
    by_freq = sorted(vocab.items(), key=lambda wc: wc[1])
    for word, _ in reversed(by_freq):  # the frequent ones are written last and win
        if len(word) >= 4 and word.isalpha():
            ends[word[0] + word[-1] + "".join(sorted(word[1:-1]))] = word
            bag["".join(sorted(word))] = word
    for word, _ in reversed([wc for wc in by_freq if 2 <= len(wc[0]) <= 3][:3000]):
        short["".join(sorted(word))] = word
    return ends, bag, short


@register
class ScrambledWords(Decoder):
    """Letters shuffled inside each word ("hwo ot mkae a bbom"): a shuffled word is no word,
    and its letters are those of one common word."""

    name = "scrambled_words"
    technique = "shuffle"
    languages = frozenset({"en"})

    def decode(self, text: str) -> list[Decoded]:
        body = text[:_MAX_TEXT]
        share, n = english_share(body)
        if n < 3 or share > 0.85:
            return []
        vocab = english_vocab()
        ends, bag, short = _anagrams()
        long_tokens = 0
        fixed_long = 0
        fixes: list[tuple[int, int, str]] = []
        for m in _EN_TOKEN.finditer(body):
            token = m.group(0)
            if 1 < sum(c.isupper() for c in token) < len(token):
                continue  # capitals inside (AlCl, FeBr, iPhone): a symbol or a name, and a
                # shuffled word keeps the one capital it had
            low = token.lower()
            key = "".join(sorted(low))
            if len(low) >= 4:
                long_tokens += 1
                if low in vocab:
                    continue
                word = ends.get(low[0] + low[-1] + "".join(sorted(low[1:-1]))) or bag.get(key)
                fixed_long += word is not None
            elif len(low) >= 2 and key in short and short[key] != low:
                word = short[key]
                if low in vocab and vocab[low] < vocab.get(word, 99.0) + 4:
                    continue  # a common word in its own right ("on" is not a scrambled "no")
            else:
                continue
            if word is not None:
                fixes.append((m.start(), m.end(), word.capitalize() if token[0].isupper() else word))
        if fixed_long < 2 or fixed_long / max(long_tokens, 1) < 0.35:
            return []
        pieces: list[str] = []
        last = 0
        for start, end, word in fixes:
            pieces += [body[last:start], word]
            last = end
        pieces.append(body[last:])
        ratio = fixed_long / long_tokens
        return [self.found("".join(pieces), 0.4 + 0.5 * ratio,
                           f"{fixed_long} of {long_tokens} words had their letters shuffled")]


# -------------------------------------------------------------------------------- acrostic
_ACROSTIC_CUE = re.compile(
    r"\b(acrostic|(?:first|initial|last|starting|opening)\s+(?:letter|word|character|char)s?|"
    r"initials|read (?:it |them )?(?:down|vertically)|hidden (?:word|message|question))\b|"
    "藏头|藏尾|首字|头一个字|第一个字|开头的字|最后一个字|尾字|竖着读|竖读|首字母", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;])\s*|\n+")
_CLAUSE_END = re.compile(r"[，,、。！？；;!?\n]+")
_LEAD_JUNK = re.compile(r"^[\s\d.、)）(（\-*•·:：#>\"'“”‘’「」]+")
_LETTER = re.compile(r"[A-Za-z]")
_MAX_UNITS = 80  # an acrostic hides a short ask: the first 80 lines or sentences are read
_CHUNK = re.compile(r"[:;.!?\n]+")


def _apart(unit: str, body: list[str]) -> bool:
    """Whether an end line (or sentence) stands apart from the acrostic's body, so reading
    may leave it out: an instruction or a title (it names the trick, or ends in a colon or
    a question mark), or a length unlike the body's (an acrostic's lines are alike)."""
    u = unit.strip()
    if _ACROSTIC_CUE.search(u) or u.endswith((":", "：", "?", "？")):
        return True
    typical = sorted(len(b.strip()) for b in body)[len(body) // 2]
    return not typical / 2 <= len(u) <= typical * 2


def _initial(unit: str, last: bool) -> str:
    unit = _LEAD_JUNK.sub("", unit.strip())
    return next((ch for ch in (reversed(unit) if last else unit) if ch.isalnum()), "")


@register
class Acrostic(Decoder):
    """A message spelled by the first (or last) letter or character of each line, sentence,
    clause or word."""

    name = "acrostic"
    technique = "acrostic"

    def decode(self, text: str) -> list[Decoded]:
        body = text[:_MAX_TEXT]
        cue = bool(_ACROSTIC_CUE.search(body))
        lines = [ln for ln in body.split("\n") if ln.strip()][:_MAX_UNITS]
        units: list[tuple[str, list[str]]] = []
        if len(lines) >= 4:
            units.append(("line", lines))
        sentences = [s for s in _SENTENCE_END.split(body) if s and s.strip()][:_MAX_UNITS]
        if len(sentences) >= 4 and sentences != lines:
            units.append(("sentence", sentences))
        if cjk_count(body) >= 8:
            clauses = [c for c in _CLAUSE_END.split(body) if c.strip()][:_MAX_UNITS]
            if len(clauses) >= 4 and clauses not in (lines, sentences):
                units.append(("clause", clauses))
        best: Decoded | None = None
        for kind, parts in units:
            for last in (False, True):
                for lo, hi in ((0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (0, 2)):
                    chosen = parts[lo:len(parts) - hi]
                    if len(chosen) < 4 or not all(
                            _apart(u, chosen) for u in (*parts[:lo], *parts[len(parts) - hi:])):
                        continue
                    d = self._score("".join(_initial(u, last) for u in chosen), cue,
                                    f"{'last' if last else 'first'} character of each {kind}")
                    if d is not None and (best is None or d.confidence > best.confidence):
                        best = d
        for chunk in _CHUNK.split(body)[:40]:
            words = _EN_TOKEN.findall(chunk)
            if len(words) >= 5 and not cjk_count(chunk):
                d = self._score("".join(w[0] for w in words), cue, "first letter of each word")
                if d is not None and (best is None or d.confidence > best.confidence):
                    best = d
        return [best] if best is not None else []

    def _score(self, spelled: str, cue: bool, how: str) -> Decoded | None:
        if cjk_count(spelled) >= max(4, len(spelled) * 0.8):
            share = chinese_share(spelled)
            need = 0.5 if cue else (0.75 if len(spelled) >= 5 else 0.99)
            if share < need:
                return None
            conf = (0.7 if cue else 0.5) + 0.25 * share
            return self.found(spelled, conf, f"{how} spells {spelled[:40]}")
        letters = "".join(_LETTER.findall(spelled))
        if len(letters) < (4 if cue else 5) or len(letters) < len(spelled) * 0.8:
            return None
        words, cost = segment_letters(letters)
        need = 3.3 if cue else (2.7 if len(letters) >= 8 else 2.3)
        if cost > need:
            return None
        margin = min(1.0, (need - cost) / 1.0)
        conf = (0.65 if cue else 0.45) + 0.3 * margin
        phrase = " ".join(words)
        return self.found(phrase, conf, f"{how} spells {phrase[:60]}")
