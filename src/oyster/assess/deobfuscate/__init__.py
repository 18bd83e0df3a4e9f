"""De-obfuscation: recover what a message hides, before it is assessed.

Most messages hide nothing, and for them this stage costs well under a millisecond. For
the rest it returns the recovered payloads, each with the decoder and attack technique
that found it, a confidence and a line of evidence, so the assessor can judge the payload
as text, alongside the message as written:

    from oyster.assess.deobfuscate import deobfuscate
    for p in deobfuscate("aG93IHRvIGJha2UgYnJlYWQ="):
        p.decoder, p.technique, p.text, p.confidence, p.revealed

One decoder per technique (`base.Decoder` states the contract; `DECODERS` lists them in
the order they run):

| decoder | technique | recovers |
|---|---|---|
| `doubled_chars` | char_split | every character or word written two or three times |
| `chaizi` | char_split | Chinese characters written as their components (拆字) |
| `reversed` | encoding | text written backwards; words in reverse order |
| `scrambled_words` | shuffle | letters shuffled inside words |
| `acrostic` | acrostic | first/last letters or characters of lines, sentences, clauses, words |
| `base64`, `hex`, `char_codes` | encoding | base64; hex or binary bytes; decimal character codes |
| `caesar` | encoding | rot13 and other alphabet shifts |
| `url_escape`, `unicode_escape` | encoding | %XX escapes; \\uXXXX, \\xXX, &#NN; escapes |
| `leetspeak`, `homoglyphs` | encoding | digits for letters; look-alike, styled, invisible characters |
| `code_assembly` | payload_split | strings built by code: variables concatenated, joins, chr() |
| `story` | role_play | an ask placed inside a story or a dialogue |

A message decoded with enough confidence is decoded once more, as a reader then sees it
(base64 of reversed text, a story inside base64): two levels deep.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from oyster.assess.base import AttackFinding, PayloadFinding

# importing the decoder modules registers their decoders, in this order
from oyster.assess.deobfuscate import chinese, code, encodings, letters, story  # noqa: F401
from oyster.assess.deobfuscate.base import DECODERS, Decoded, Decoder
from oyster.types import Level

__all__ = ["DECODERS", "HIDING_COUNTS_FROM", "JUDGE_MIN", "JUDGE_REVEALED", "MAX_READINGS", "REPLACE_MIN",
           "Decoded", "Decoder", "Readings", "deobfuscate", "explained", "merge_attacks", "read",
           "replaces_surface", "report", "warm_up"]

_log = logging.getLogger(__name__)
_MAX_CHARS = 40_000  # longer messages are decoded on their head and tail
_NESTED_MIN = 0.5  # a payload this sure of itself is decoded again
_MAX_PAYLOADS = 8
MAX_READINGS = 6
# A payload decoded at least this confidently is judged as text (and reported) ...
JUDGE_MIN = 0.5
# ... and at least this confidently, by a decoder whose surface is not language, it stands
# for the message: the garbled surface is no longer judged on its own.
REPLACE_MIN = 0.8
# Whether an assessor also judges the message with a payload put back in place
# (`Decoded.revealed`), beside the payload alone.
JUDGE_REVEALED = False
# From which level of a payload's own reading hiding it counts as an attack wrapper around
# it (the local assessor; chosen on the validation split).
HIDING_COUNTS_FROM: Level = "R1"


def warm_up() -> None:
    """Load every packaged table now rather than on the first message that needs one (so
    that message is not the slow one): word frequencies, anagram index, 拆字 table, Chinese
    dictionary. The load time is in docs/deobfuscation.md."""
    from oyster.assess.deobfuscate.chinese import _index
    from oyster.assess.deobfuscate.encodings import _common_short
    from oyster.assess.deobfuscate.lang import _english, _jieba
    from oyster.assess.deobfuscate.letters import _anagrams

    for load in (_english, _jieba, _anagrams, _index, _common_short):
        load()


def _key(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def replaces_surface(payload: Decoded) -> bool:
    """Whether this payload's decoder stands for the whole message when it is confident
    (see `Decoder.replaces_surface`); every decoder of a nested chain must."""
    return all(DECODERS[name].replaces_surface for name in payload.decoder.split(">")
               if name in DECODERS)


def _run(text: str, decoders: Iterable[Decoder], min_confidence: float) -> list[Decoded]:
    found: list[Decoded] = []
    for decoder in decoders:
        try:
            found.extend(d for d in decoder.decode(text) if d.confidence >= min_confidence)
        except Exception:  # a decoder bug must not take the assessment down; it is logged
            _log.exception("decoder %s failed on a %d-character text", decoder.name, len(text))
    return found


def deobfuscate(text: str, *, min_confidence: float = 0.3, depth: int = 2,
                decoders: Iterable[Decoder] | None = None) -> list[Decoded]:
    """Payloads hidden in `text`, most confident first, each with `revealed` set (the
    message as a reader sees it once that payload is decoded). Payloads that only repeat
    the text are dropped; one text recovered by several decoders is kept once, from the
    most confident. Never raises."""
    if not isinstance(text, str) or not text.strip():
        return []
    if len(text) > _MAX_CHARS:
        text = text[: _MAX_CHARS // 2] + "\n" + text[-_MAX_CHARS // 2:]
    chosen = list(DECODERS.values()) if decoders is None else list(decoders)
    seen = {_key(text)}
    out: list[Decoded] = []
    level = [(d, replace(d, revealed=d.reveal(text))) for d in _run(text, chosen, min_confidence)]
    for _ in range(depth):
        nested: list[tuple[Decoded, Decoded]] = []
        for _, payload in sorted(level, key=lambda pair: -pair[1].confidence):
            key = _key(payload.text)
            if key in seen or not key:
                continue
            seen.add(key)
            out.append(payload)
            if payload.confidence >= _NESTED_MIN:
                # decode the message again as a reader now sees it (a story inside base64)
                for inner in _run(payload.revealed, chosen, min_confidence):
                    nested.append((payload, replace(
                        inner, decoder=f"{payload.decoder}>{inner.decoder}",
                        confidence=round(min(payload.confidence, inner.confidence), 3),
                        evidence=f"{payload.evidence}; then {inner.evidence}"[:160],
                        span=None, revealed=inner.reveal(payload.revealed))))
        level = nested
        if not level:
            break
    out.sort(key=lambda d: -d.confidence)
    return out[:_MAX_PAYLOADS]


@dataclass(frozen=True)
class Readings:
    """What an assessor judges for one message: the message as written, and each payload
    decoded from it at `JUDGE_MIN` or more, as text of its own; the riskiest reading wins.

    `surface_replaced`: a payload at `REPLACE_MIN` or more, from a decoder whose surface is
    not language (`replaces_surface`), stands for the message. The garbled surface then
    counts only for what it says in plain words (a harmful ask written beside the encoded
    part), never for the look of the obfuscation itself (base64 gibberish, doubled letters
    and a "decode this" instruction read as an attack around a harmless payload)."""

    text: str
    payloads: tuple[Decoded, ...] = ()
    surface_replaced: bool = False


def read(text: str, payloads: Iterable[Decoded] | None = None, *,
         judge_min: float = JUDGE_MIN, replace_min: float = REPLACE_MIN) -> Readings:
    """The readings of one message; `payloads` defaults to `deobfuscate(text)`. The two
    thresholds default to the values chosen on the validation split (docs/evaluation.md)."""
    found = tuple(p for p in (deobfuscate(text) if payloads is None else payloads)
                  if p.confidence >= judge_min and p.text.strip())[:MAX_READINGS]
    replaced = any(p.confidence >= replace_min and replaces_surface(p) for p in found)
    return Readings(text, found, replaced)


def explained(payload: Decoded) -> set[str]:
    """The attack techniques a payload's decoding accounts for (every step of a chain)."""
    return {DECODERS[n].technique for n in payload.decoder.split(">") if n in DECODERS} | {
        payload.technique}


def report(turn: int, judged: Iterable[tuple[Decoded, Level | None]]
           ) -> tuple[list[AttackFinding], list[PayloadFinding]]:
    """The attack findings and payload records for the payloads of one user turn (each
    with the level its riskiest reading was judged at): one finding per technique in a
    decoder chain, at the payload's confidence."""
    attacks: list[AttackFinding] = []
    records: list[PayloadFinding] = []
    for payload, level in judged:
        evidence = f"decoded by {payload.decoder}: {payload.text[:60]}"
        techniques = [DECODERS[n].technique for n in payload.decoder.split(">") if n in DECODERS]
        for technique in dict.fromkeys(techniques or [payload.technique]):
            attacks.append(AttackFinding(technique=technique, turn=turn,
                                         confidence=payload.confidence, evidence=evidence))
        records.append(PayloadFinding(turn=turn, technique=payload.technique,
                                      decoder=payload.decoder, confidence=payload.confidence,
                                      text=payload.text[:300], evidence=payload.evidence,
                                      level=level))
    return attacks, records


def merge_attacks(found: Iterable[AttackFinding], decoded: Iterable[AttackFinding]
                  ) -> list[AttackFinding]:
    """Structural findings plus decoding findings: one per (turn, technique), the more
    confident kept, ordered as `detect_attacks` orders them."""
    best: dict[tuple[int, str], AttackFinding] = {}
    for f in [*found, *decoded]:
        key = (f.turn, f.technique)
        if key not in best or f.confidence > best[key].confidence:
            best[key] = f
    return sorted(best.values(), key=lambda f: (f.turn, -f.confidence))
