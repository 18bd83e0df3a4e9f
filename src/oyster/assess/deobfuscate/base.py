"""The decoder contract.

A decoder recovers what one obfuscation technique hides in a text. Every decoder keeps
these rules (tests hold each registered decoder to them):

- `decode(text) -> list[Decoded]`: the payloads the technique would hide in `text`, most
  confident first; an empty list when nothing is hidden, which is what ordinary text gets.
- `confidence` in [0, 1] says how sure the decoder is that the technique is really used
  and that `text` is what it hides. It says nothing about harm: judging the payload is the
  assessor's job, and a harmless payload stays harmless.
- It is cheap on ordinary text: a regex or count gate runs before any real work, because
  the stage runs on every turn and nearly every turn hides nothing (costs measured in
  docs/deobfuscation.md).
- It never raises on any `str` (empty, huge, binary-looking, mixed scripts, lone
  surrogates) and holds no state between calls; packaged tables load once, lazily.
- `technique` is a name from `oyster.types.ATTACK_TECHNIQUES` (the attack it reports);
  `name` is the decoder's own (several decoders can report one technique).
- `replaces_surface`: whether a confident decode stands for the whole message (see below).
- `span` is the part of the input the payload was hidden in (`None`: the whole text), so
  the stage can rebuild the message as a reader would see it once decoded (`revealed`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from oyster.types import ATTACK_TECHNIQUES, Language

__all__ = ["DECODERS", "Decoded", "Decoder", "register", "segments"]


@dataclass(frozen=True)
class Decoded:
    """One payload recovered from a text."""

    decoder: str
    technique: str
    text: str
    confidence: float
    evidence: str
    span: tuple[int, int] | None = None
    # the input with the hidden part replaced by `text`; the stage fills it in
    revealed: str = field(default="", compare=False)

    def reveal(self, source: str) -> str:
        """`source` as a reader would see it once this payload is decoded."""
        if self.span is None:
            return self.text
        start, end = self.span
        return source[:start] + self.text + source[end:]


class Decoder(ABC):
    """Base class: one decoder per obfuscation technique (see the module docstring)."""

    name: ClassVar[str]
    technique: ClassVar[str]
    languages: ClassVar[frozenset[Language]] = frozenset({"en", "zh"})
    # Whether a confident decode stands for the whole message: true where the surface is
    # not language a reader would judge (codes, split or doubled characters, cover text);
    # false where the surface is itself a readable request that is judged as well (a story).
    replaces_surface: ClassVar[bool] = True

    @abstractmethod
    def decode(self, text: str) -> list[Decoded]:
        """The payloads hidden in `text` by this technique; `[]` when none."""

    def found(self, text: str, confidence: float, evidence: str,
              span: tuple[int, int] | None = None) -> Decoded:
        """A `Decoded` from this decoder, confidence rounded and clipped to [0, 1]."""
        return Decoded(decoder=self.name, technique=self.technique, text=text,
                       confidence=round(min(1.0, max(0.0, confidence)), 3),
                       evidence=evidence[:120], span=span)


# name -> decoder instance, in registration order (the order the stage runs them)
DECODERS: dict[str, Decoder] = {}


def register(cls: type[Decoder]) -> type[Decoder]:
    """Class decorator: add one instance of `cls` to `DECODERS`."""
    if cls.technique not in ATTACK_TECHNIQUES:
        raise ValueError(f"decoder {cls.__name__}: technique {cls.technique!r} is not one of "
                         f"{ATTACK_TECHNIQUES}")
    if cls.name in DECODERS:
        raise ValueError(f"decoder name {cls.name!r} registered twice")
    DECODERS[cls.name] = cls()
    return cls


# ------------------------------------------------------------- helpers shared by decoders
_QUOTED = re.compile(r"\"([^\"\n]{6,400})\"|(?<!\w)'([^'\n]{6,400})'(?!\w)|“([^”\n]{4,400})”|"
                     r"「([^」\n]{4,400})」|『([^』\n]{4,400})』|‘([^’\n]{6,400})’")
_AFTER_COLON = re.compile(r"[:：]\s*([^:：\n][^\n]{3,400})\s*$", re.MULTILINE)


def segments(text: str) -> list[tuple[str, tuple[int, int] | None]]:
    """The whole text, then each line, each quoted part and each part after a colon, with
    their spans: a wrapper sentence usually surrounds the hidden part."""
    out: list[tuple[str, tuple[int, int] | None]] = [(text, None)]
    seen = {text.strip()}

    def add(start: int, end: int) -> None:
        part = text[start:end]
        stripped = part.strip()
        if stripped and stripped not in seen and len(seen) < 24:
            seen.add(stripped)
            lead = len(part) - len(part.lstrip())
            out.append((stripped, (start + lead, start + lead + len(stripped))))

    pos = 0
    for line in text.split("\n"):
        add(pos, pos + len(line))
        pos += len(line) + 1
    for m in _QUOTED.finditer(text):
        g = next(i for i in range(1, 7) if m.group(i) is not None)
        add(m.start(g), m.end(g))
    for m in _AFTER_COLON.finditer(text):
        add(m.start(1), m.end(1))
    return out
