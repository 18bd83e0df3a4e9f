"""Decoders for text put through a code: base64, hex and binary bytes, Caesar shifts
(rot13 among them), URL escapes, backslash and HTML escapes, leetspeak, and look-alike
letters (Cyrillic and Greek homoglyphs, full-width and styled letters, invisible
characters). Each finds the encoded stretch by its alphabet, decodes it, and keeps the
result only when it reads as text."""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata
from functools import cache
from itertools import product
from urllib.parse import unquote

from oyster.assess.deobfuscate.base import Decoded, Decoder, register, segments
from oyster.assess.deobfuscate.lang import (
    _english,
    chinese_share,
    cjk_count,
    english_cost,
    english_share,
)

_MAX_TEXT = 20_000
_MAX_HITS = 4


def _readable(raw: bytes) -> str | None:
    """`raw` as UTF-8 text when it is mostly printable letters, else None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.strip():
        return None
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\n\t")
    letters = sum(1 for ch in text if ch.isalpha())
    if printable < len(text) * 0.95 or letters < len(text.replace(" ", "")) * 0.5:
        return None
    return text


def _plausibility(text: str) -> float:
    """How much a decoded string reads as English or Chinese, in [0, 1]."""
    if cjk_count(text) >= 2:
        return max(0.5, chinese_share(text))
    share, n = english_share(text)
    return share if n else 0.0


# ---------------------------------------------------------------------------------- base64
_B64 = re.compile(r"(?<![A-Za-z0-9+/=_\-])[A-Za-z0-9+/_\-]{12,}={0,2}(?![A-Za-z0-9+/=_\-])")


@register
class Base64(Decoder):
    """Base64 (standard or URL-safe alphabet, padding optional)."""

    name = "base64"
    technique = "encoding"

    def decode(self, text: str) -> list[Decoded]:
        out: list[Decoded] = []
        for m in _B64.finditer(text[:_MAX_TEXT]):
            token = m.group(0)
            if token.isalpha() and (token.islower() or token.isupper()):
                continue  # a long word, not base64
            if not re.search(r"[0-9+/=_\-]|[a-z][A-Z]|[A-Z][a-z].*[A-Z]", token):
                continue
            if re.fullmatch(r"[0-9a-fA-F]+", token):
                continue  # hex digits: the hex decoder's job
            body = token.rstrip("=")
            body += "=" * (-len(body) % 4)
            try:
                raw = (base64.urlsafe_b64decode(body) if re.search(r"[_\-]", body)
                       else base64.b64decode(body, validate=True))
            except (binascii.Error, ValueError):
                continue
            decoded = _readable(raw)
            if decoded is None:
                continue
            conf = 0.6 + 0.35 * _plausibility(decoded)
            out.append(self.found(decoded, conf, f"base64 → {decoded[:60]}", m.span()))
            if len(out) >= _MAX_HITS:
                break
        return out


# -------------------------------------------------------------------------- hex and binary
_HEX_JOINED = re.compile(r"(?<![0-9A-Za-z])(?:0x)?((?:[0-9a-fA-F]{2}){8,})(?![0-9A-Za-z])")
_HEX_SPACED = re.compile(r"(?<![0-9A-Za-z])(?:(?:\\x|0x|%)?[0-9a-fA-F]{2}(?:[ ,:;\-]+|(?=\\x|0x))){5,}"
                         r"(?:\\x|0x|%)?[0-9a-fA-F]{2}(?![0-9a-fA-F])")
_BINARY = re.compile(r"(?<![01])(?:[01]{8}[ ,]*){4,}(?![01])")


@register
class HexBytes(Decoder):
    """Bytes written as hex digits ("68 6f 77", "\\x68\\x6f", "0x68,0x6f") or 8-bit binary."""

    name = "hex"
    technique = "encoding"

    def decode(self, text: str) -> list[Decoded]:
        body = text[:_MAX_TEXT]
        out: list[Decoded] = []
        seen: set[tuple[int, int]] = set()
        matches = [(m.span(), re.sub(r"\\x|0x|%|[^0-9a-fA-F]", "", m.group(0)), "hex")
                   for m in _HEX_SPACED.finditer(body)]
        matches += [(m.span(), m.group(1), "hex") for m in _HEX_JOINED.finditer(body)]
        matches += [(m.span(), m.group(0), "binary") for m in _BINARY.finditer(body)]
        for span, digits, kind in matches:
            if any(span[0] < e and s < span[1] for s, e in seen):
                continue
            try:
                if kind == "hex":
                    raw = bytes.fromhex(digits[: len(digits) // 2 * 2])
                else:
                    bits = re.sub(r"[^01]", "", digits)
                    raw = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits) // 8 * 8, 8))
            except ValueError:
                continue
            decoded = _readable(raw)
            if decoded is None:
                continue
            seen.add(span)
            conf = 0.6 + 0.35 * _plausibility(decoded)
            out.append(self.found(decoded, conf, f"{kind} → {decoded[:60]}", span))
            if len(out) >= _MAX_HITS:
                break
        return out


# --------------------------------------------------------------------------- Caesar / rot13
def _shift(text: str, n: int) -> str:
    out = []
    for ch in text:
        if "a" <= ch <= "z":
            out.append(chr((ord(ch) - 97 + n) % 26 + 97))
        elif "A" <= ch <= "Z":
            out.append(chr((ord(ch) - 65 + n) % 26 + 65))
        else:
            out.append(ch)
    return "".join(out)


@register
class CaesarShift(Decoder):
    """Letters shifted along the alphabet by a fixed amount (rot13 shifts by 13)."""

    name = "caesar"
    technique = "encoding"
    languages = frozenset({"en"})

    def decode(self, text: str) -> list[Decoded]:
        body = text[:4000]
        out: list[Decoded] = []
        for seg, span in segments(body):
            before, n = english_share(seg)
            if n < 3 or before > 0.5:
                continue
            best = max(((english_share(_shift(seg, k))[0], k) for k in
                        [13, *range(1, 13), *range(14, 26)]), key=lambda sk: sk[0])
            after, k = best
            if after >= 0.75 and after - before >= 0.4:
                label = "rot13" if k == 13 else f"Caesar shift {26 - k}"
                out.append(self.found(_shift(seg, k), 0.5 + 0.45 * (after - before),
                                      f"{label} (words {before:.0%} → {after:.0%})", span))
        return sorted(out, key=lambda d: -d.confidence)[:2]


# ----------------------------------------------------------------------- URL and \u escapes
_URL = re.compile(r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9._~+!*'()\-])*%[0-9A-Fa-f]{2}"
                  r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9._~+!*'()\-])*")
_ESCAPE = (r"\\u[0-9a-fA-F]{4}|\\U[0-9a-fA-F]{8}|\\x[0-9a-fA-F]{2}|&#[xX][0-9a-fA-F]{1,6};|"
           r"&#[0-9]{1,7};|\\u\{[0-9a-fA-F]{1,6}\}")
_ESCAPES = re.compile(rf"(?:{_ESCAPE})(?:(?:{_ESCAPE})|[A-Za-z0-9 ,.?!'\-])*(?:{_ESCAPE})")
_ONE_ESCAPE = re.compile(_ESCAPE)


@register
class UrlEscapes(Decoder):
    """Percent-encoded text ("%68%6F%77", "how%20to")."""

    name = "url_escape"
    technique = "encoding"

    def decode(self, text: str) -> list[Decoded]:
        body = text[:_MAX_TEXT]
        if "%" not in body:
            return []
        out: list[Decoded] = []
        for m in _URL.finditer(body):
            span = m.group(0)
            escapes = span.count("%")
            if escapes < 3 or escapes * 3 < len(span) * 0.2:
                continue
            decoded = unquote(span if "%20" in span else span.replace("+", " "), errors="strict")
            if decoded == span or not any(ch.isalpha() for ch in decoded):
                continue
            conf = 0.55 + 0.4 * _plausibility(decoded)
            out.append(self.found(decoded, conf, f"URL escapes → {decoded[:60]}", m.span()))
            if len(out) >= _MAX_HITS:
                break
        return out


def _unescape(run: str) -> str:
    """Decode \\u, \\U, \\x (as UTF-8 bytes) and HTML numeric escapes in `run`."""
    out: list[str] = []
    pending = bytearray()

    def flush() -> None:
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
            pending.clear()

    pos = 0
    for m in _ONE_ESCAPE.finditer(run):
        if m.start() > pos:
            flush()
            out.append(run[pos:m.start()])
        esc = m.group(0)
        if esc.startswith("\\x"):
            pending.append(int(esc[2:], 16))
        else:
            flush()
            if esc.startswith("&"):
                out.append(html.unescape(esc))
            else:
                code = int(esc.strip("\\uU{}"), 16)
                out.append(chr(code) if code <= 0x10FFFF else "\ufffd")
        pos = m.end()
    flush()
    out.append(run[pos:])
    # join surrogate pairs written as two \u escapes
    return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16", errors="replace")


@register
class BackslashEscapes(Decoder):
    """Characters written as escapes: \\u5982, \\U0001F600, \\x68 (UTF-8 bytes), &#104;, &#x68;."""

    name = "unicode_escape"
    technique = "encoding"

    def decode(self, text: str) -> list[Decoded]:
        body = text[:_MAX_TEXT]
        if "\\" not in body and "&#" not in body:
            return []
        out: list[Decoded] = []
        for m in _ESCAPES.finditer(body):
            run = m.group(0)
            if len(_ONE_ESCAPE.findall(run)) < 3:
                continue
            decoded = _unescape(run)
            if "\ufffd" in decoded or not any(ch.isalpha() for ch in decoded):
                continue
            conf = 0.6 + 0.35 * _plausibility(decoded)
            out.append(self.found(decoded, conf, f"escapes → {decoded[:60]}", m.span()))
            if len(out) >= _MAX_HITS:
                break
        return out


# ------------------------------------------------------------------------------- leetspeak
_LEET: dict[str, str] = {"0": "o", "1": "il", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t",
                         "8": "b", "9": "g", "@": "a", "$": "s", "!": "i", "|": "l", "+": "t",
                         "€": "e", "£": "l"}
_LEET_TOKEN = re.compile(r"(?<![\w@$!|+€£\\])(?=[\w@$!|+€£]*[A-Za-z])(?=[\w@$!|+€£]*[0-9@$!|+€£])"
                         r"[A-Za-z0-9@$!|+€£]{2,}(?![\w@$|+€£])")
_NUMBER_WORD = re.compile(r"^\d+[a-z]+$")
_VERSIONED = re.compile(r"^[a-z]+\d+$")
_LEET_A = re.compile(r"(?<![\w@$])[4@](?![\w@$])")  # "4" or "@" standing for the word "a"
_LEET_NUMBER = re.compile(r"(?<![\w.,])[0-9]{1,3}(?![\w.,])")  # "1" for I, "70" for to


@cache
def _common_short() -> frozenset[str]:
    """The 300 most frequent English words of one to three letters."""
    vocab = _english()
    return frozenset(sorted((w for w in vocab if len(w) <= 3), key=vocab.__getitem__)[:300])


def _number_word(token: str) -> str | None:
    """A short all-digit token read as leet ("70" -> "to"), only among common short words."""
    options = [_LEET.get(ch, "") for ch in token]
    if not all(options):
        return None
    common = _common_short()
    return next((w for w in ("".join(p) for p in product(*options)) if w in common), None)


def _unleet(token: str, short: bool) -> str | None:
    """The English word `token` spells with leet symbols read as letters, if any; two-symbol
    tokens ("t0") only when `short` (the text has leet words already)."""
    low = token.lower().rstrip("!")
    if len(low) < (2 if short else 3) or english_cost(low) is not None:
        return None
    # a number with a unit or suffix ("90th", "3d", "18s"), a name with a version ("mp3")
    if _NUMBER_WORD.match(low) or (not short and _VERSIONED.match(low)):
        return None
    options = [_LEET.get(ch, ch) if ch in _LEET else ch for ch in low]
    ambiguous = sum(1 for o in options if len(o) > 1)
    if ambiguous > 4 or not any(ch in _LEET for ch in low):
        return None
    best: tuple[float, str] | None = None
    for letters in product(*options):
        word = "".join(letters)
        cost = english_cost(word)
        if cost is not None and (best is None or cost < best[0]):
            best = (cost, word)
    return best[1] if best else None


@register
class Leetspeak(Decoder):
    """Letters replaced by digits or symbols that look like them ("h0w t0 m4k3")."""

    name = "leetspeak"
    technique = "encoding"
    languages = frozenset({"en"})

    def decode(self, text: str) -> list[Decoded]:
        body = text[:_MAX_TEXT]
        fixes = [(m.start(), m.end(), word) for m in _LEET_TOKEN.finditer(body)
                 if (word := _unleet(m.group(0), short=False)) is not None]
        if not fixes:
            return []
        if len(fixes) >= 2:  # leet is in use: read short tokens and a lone "4" too
            fixes = [(m.start(), m.end(), word) for m in _LEET_TOKEN.finditer(body)
                     if (word := _unleet(m.group(0), short=True)) is not None]
            fixes += [(m.start(), m.end(), "a") for m in _LEET_A.finditer(body)]
            fixes += [(m.start(), m.end(), word) for m in _LEET_NUMBER.finditer(body)
                      if m.group(0) != "4" and (word := _number_word(m.group(0))) is not None]
            fixes.sort()
        words = len(body.split())
        if len(fixes) == 1 and words > 12:
            conf = 0.4
        else:
            conf = min(0.9, 0.45 + 0.15 * len(fixes) + (0.1 if words <= 12 else 0.0))
        pieces: list[str] = []
        last = 0
        for start, end, word in fixes:
            pieces += [body[last:start], word]
            last = end
        pieces.append(body[last:])
        shown = ", ".join(f"{body[s:e]}→{w}" for s, e, w in fixes[:4])
        return [self.found("".join(pieces), conf, f"leetspeak: {shown}")]


# ------------------------------------------------------------------------------ homoglyphs
# Cyrillic and Greek letters drawn like Latin ones (Unicode confusables, written out here).
_CONFUSABLE = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d",
    "һ": "h", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ɡ": "g", "ɑ": "a", "ⅼ": "l",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
    "Т": "T", "Х": "X", "У": "Y", "Ѕ": "S", "І": "I", "Ј": "J", "Ԛ": "Q", "Ԝ": "W",
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "i", "κ": "k", "τ": "t", "υ": "u", "χ": "x",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
})
_INVISIBLE = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff\u00ad\u034f\u180e]")
_WORD = re.compile(r"[^\W\d_][^\W_]*", re.UNICODE)
# characters that can stand in for Latin letters: Greek, Cyrillic, IPA, full-width, circled,
# mathematical styles, and the invisible ones
_SUSPECT = re.compile("[\u0250-\u02af\u0370-\u04ff\u0500-\u052f\u2100-\u214f\u24b6-\u24e9"
                      "\uff21-\uff3a\uff41-\uff5a\U0001d400-\U0001d7ff\u200b-\u200f"
                      "\u2060-\u2064\ufeff\u00ad\u034f\u180e]")


def _latin(token: str) -> str:
    """`token` with styled letters (full-width, mathematical, circled) read as ASCII and
    Cyrillic/Greek look-alikes as Latin."""
    chars = []
    for ch in token:
        if ch.isascii():
            chars.append(ch)
            continue
        folded = unicodedata.normalize("NFKC", ch)
        chars.append(folded if folded.isascii() and folded.isalnum() else ch)
    return "".join(chars).translate(_CONFUSABLE)


@register
class Homoglyphs(Decoder):
    """Latin words written with look-alike letters from other scripts or styles ("bоmb" with
    a Cyrillic о, "ｂｏｍｂ", "𝐛𝐨𝐦𝐛"), or with invisible characters inside."""

    name = "homoglyphs"
    technique = "encoding"
    languages = frozenset({"en"})

    def decode(self, text: str) -> list[Decoded]:
        body = text[:_MAX_TEXT]
        if body.isascii() or not _SUSPECT.search(body):
            return []
        visible = _INVISIBLE.sub("", body)
        hidden_chars = len(body) - len(visible)
        fixes: list[tuple[int, int, str]] = []
        for m in _WORD.finditer(visible):
            token = m.group(0)
            if token.isascii() or cjk_count(token):
                continue
            latin = _latin(token)
            if latin == token or not latin.isascii():
                continue
            if not any(not c.isascii() and _latin(c).isalpha() for c in token):
                continue  # only digits styled (NH₂, sp², ５): a formula, not a disguised word
            if english_cost(latin) is None and not (english_share(latin)[0] and len(latin) <= 3):
                continue
            fixes.append((m.start(), m.end(), latin))
        if not fixes and hidden_chars < 2:
            return []
        pieces: list[str] = []
        last = 0
        for start, end, word in fixes:
            pieces += [visible[last:start], word]
            last = end
        pieces.append(visible[last:])
        decoded = "".join(pieces)
        if decoded == body:
            return []
        conf = min(0.9, 0.45 + 0.15 * len(fixes) + (0.15 if hidden_chars >= 2 else 0.0))
        shown = ", ".join(w for _, _, w in fixes[:4])
        what = f"look-alike letters in: {shown}" if fixes else f"{hidden_chars} invisible characters"
        return [self.found(decoded, conf, what)]
