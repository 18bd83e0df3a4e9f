"""Transforms that derive examples from asks: jailbreak wrappers and obfuscation techniques
applied to harmful asks (and to some harmless ones, which stay harmless), asks hidden the
ways the de-obfuscation stage reads, and PyRIT's jailbreak templates around our asks."""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from oyster.assess.dataset.example import SEED, Example, data_file, make_example
from oyster.assess.leakage import normalise
from oyster.types import detect_language


# Obfuscations applied to our harmful asks, each written from what the technique is; their
# frames and the block font are data (`data/transforms.yaml`).
def _frame(kind: str, lang: str, rng: random.Random) -> str:
    return str(rng.choice(data_file("transforms.yaml")["frames"][kind][lang]))


def _char_split(ask: str, rng: random.Random) -> str:
    """Letters (or Chinese characters) set apart by a separator, in one of a few styles."""
    sep = rng.choice([" ", "-", ".", "*", "|", "/", "·", "_", "~"])
    if detect_language(ask) == "zh":
        chars = [ch for ch in ask if not ch.isspace()]
        if rng.random() < 0.3:
            return "".join(f"[{ch}]" for ch in chars)
        return sep.join(chars)
    words = ask.split()
    if rng.random() < 0.2:
        return " ".join("".join(f"[{c}]" for c in w) if len(w) > 3 else w for w in words)
    return " ".join(sep.join(w) if len(w) > 3 and rng.random() < 0.6 else w for w in words)


def _shuffle(ask: str, rng: random.Random) -> str:
    if detect_language(ask) == "zh":
        chars = [ch for ch in ask if not ch.isspace() and ch not in "，。？！、"]
        rng.shuffle(chars)
        return "".join(chars)
    words = ask.rstrip(".?!").split()
    rng.shuffle(words)
    return " ".join(words)


def _b64(ask: str, rng: random.Random) -> str:
    enc = base64.b64encode(ask.encode("utf-8")).decode()
    return _frame("encoding", detect_language(ask), rng).format(encoded=enc)


def _leet(ask: str, rng: random.Random) -> str:
    table = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"})
    return " ".join(w.translate(table) if len(w) > 3 else w for w in ask.split())


def _payload(ask: str, rng: random.Random) -> str:
    lang = detect_language(ask)
    if lang == "zh":
        cut = max(2, len(ask) // 2)
        parts = ask[:cut], ask[cut:]
    else:
        words = ask.split()
        cut = max(1, len(words) // 2)
        parts = " ".join(words[:cut]), " ".join(words[cut:])
    return _frame("payload_split", lang, rng).format(part1=parts[0], part2=parts[1])


def _block_letters(word: str, ink: str) -> str:
    font: dict[str, list[str]] = data_file("transforms.yaml")["block_font"]
    rows = ["  ".join(font[c][r] for c in word.upper() if c in font) for r in range(5)]
    return "\n".join(r.replace("X", ink).replace(".", " ").rstrip() for r in rows)


def _ascii(ask: str, rng: random.Random) -> str:
    """The ask's longest word drawn in block letters and cut out of the sentence (for
    Chinese, the request to answer in character art)."""
    frames: list[str] = data_file("transforms.yaml")["frames"]["ascii_art"][detect_language(ask)]
    # the object of the request, usually near its end, not the opening verb
    skip = set(data_file("transforms.yaml")["frame_words"])
    words = [w for w in re.findall(r"[A-Za-z]{4,}", ask) if w.lower() not in skip]
    words = words[len(words) // 3:]
    if not words:
        return rng.choice([f for f in frames if "{art}" not in f]).format(ask=ask)
    word = max(reversed(words), key=len)[:10]
    art = _block_letters(word, rng.choice(["#", "*", "@", "%"]))
    return rng.choice([f for f in frames if "{art}" in f]).format(
        ask=re.sub(rf"\b{re.escape(word)}\w*", "[WORD]", ask, count=1), art=art)


def _long(ask: str, rng: random.Random, filler: dict[str, list[str]]) -> str:
    lang = detect_language(ask)
    lines = filler[lang]
    body = "\n".join(rng.choice(lines) for _ in range(rng.randint(60, 140)))
    head = _frame("long_text", lang, rng)
    tail = _frame("long_text_tail", lang, rng).format(ask=ask)
    return f"{head}\n{body}\n{tail}".strip()


_TRANSFORMS: dict[str, Callable[[str, random.Random], str]] = {
    "char_split": _char_split, "shuffle": _shuffle, "encoding": _b64, "payload_split": _payload,
    "ascii_art": _ascii,
}


# the odd forms a harmless ask is also written in (it stays harmless)
FORMS: tuple[Callable[[str, random.Random], str], ...] = (_char_split, _shuffle)


def _fill(template: str, ask: str) -> str:
    return template.replace("{ask}", ask)


def _with_rng(fn: Callable[[str, random.Random], str], rng: random.Random, ask: str) -> str:
    return fn(ask, rng)


def _long_rng(rng: random.Random, filler: dict[str, list[str]], ask: str) -> str:
    return _long(ask, rng, filler)


def wrapped(asks: list[Example], rng: random.Random, per_ask: int) -> Iterator[Example]:
    data = data_file("written.yaml")
    wrappers: dict[str, list[dict[str, str]]] = data["wrappers"]
    filler: dict[str, list[str]] = data["filler"]
    for ask in asks:
        lang = ask.lang
        options: list[tuple[str, str, Callable[[str], str]]] = []
        for w in wrappers[lang]:
            options.append((f"wrap:{w['id']}", w["technique"], partial(_fill, w["text"])))
        for name, fn in _TRANSFORMS.items():
            options.append((f"tf:{name}", name, partial(_with_rng, fn, rng)))
        options.append(("tf:long_text", "long_text", partial(_long_rng, rng, filler)))
        if lang == "en":
            options.append(("tf:leet", "encoding", partial(_with_rng, _leet, rng)))
        for wid, technique, make in rng.sample(options, min(per_ask, len(options))):
            yield make_example(make(ask.text.rstrip("。.")), "R2", "malicious", list(ask.categories),
                               f"wrapped:{ask.source}", ask.group, form="instruction",
                               technique=technique, wrapper=wid)


HIDDEN_SHARE = 0.6  # share of our harmful and of our harmless asks also written hidden
_HIDDEN_TAIL = frozenset({"base64", "hex", "url_escape", "unicode_escape", "char_codes",
                          "leetspeak", "doubled"})


def _hide_tail(ask: str, obfuscator: Any, rng: random.Random) -> str:
    """`ask` with only its last words (Chinese: last characters) hidden, the rest plain:
    the object of a request hidden inside an ordinary sentence."""
    lang = detect_language(ask)
    body = ask.rstrip("。.？?！! ")
    end = ask[len(body):].strip()
    if lang == "zh":
        k = rng.randint(2, max(2, min(6, len(body) // 2)))
        head, tail = body[:-k], body[-k:]
        joined = f"{head}{obfuscator.transform(tail, rng)}{end}"
    else:
        words = body.split()
        k = rng.randint(2, max(2, min(4, len(words) // 2)))
        head, tail = " ".join(words[:-k]), " ".join(words[-k:])
        joined = f"{head} {obfuscator.transform(tail, rng)}{end}"
    how = data_file("transforms.yaml")["hidden_names"][lang][obfuscator.name]
    return _frame("hidden_tail", lang, rng).format(ask=joined, how=how)


def hidden(asks: list[Example], benign: bool) -> Iterator[Example]:
    """Some of our asks hidden the ways the de-obfuscation stage reads (its own
    obfuscators, `assess.deobfuscate.obfuscate`; our wrapper wording), whole or only their
    last words: harmful ones stay R2, harmless ones stay R0 (hiding is not the harm). They
    give the heads both directions and the validation split the examples the stage's
    thresholds are chosen on."""
    from oyster.assess.deobfuscate import DECODERS
    from oyster.assess.deobfuscate.obfuscate import OBFUSCATORS

    for ask in asks:
        rng = random.Random(f"{SEED}:hidden:{ask.group}:{normalise(ask.text)}")
        if rng.random() >= HIDDEN_SHARE:
            continue
        options = [o for o in OBFUSCATORS.values() if ask.lang in o.languages]
        ob = rng.choice(options)
        if ob.name in _HIDDEN_TAIL and len(ask.text) > 12 and rng.random() < 0.4:
            text = _hide_tail(ask.text, ob, rng)
        else:
            text = ob.apply(ask.text.rstrip("。.") if ob.name != "story" else ask.text, rng)
        technique = DECODERS[ob.decoder].technique
        if benign:
            yield make_example(text, "R0", "benign", ["none"], f"{ask.source}+hidden", ask.group,
                               form="instruction", technique=technique, obfuscator=ob.name)
        else:
            yield make_example(text, "R2", "malicious", list(ask.categories), f"{ask.source}+hidden",
                               ask.group, form="instruction", technique=technique, obfuscator=ob.name)


def pyrit_applied(templates: list[tuple[str, str]], asks: list[Example],
                  rng: random.Random) -> Iterator[Example]:
    for name, tpl in templates:
        ask = rng.choice(asks)
        text = tpl.replace("{{ prompt }}", ask.text)
        yield make_example(text, "R2", "malicious", list(ask.categories), "pyrit_jailbreak",
                           f"pyrit_tpl:{name}", form="instruction", technique="role_play",
                           template=name, ask_group=ask.group)
