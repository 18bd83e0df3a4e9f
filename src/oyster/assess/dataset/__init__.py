"""Training data for the local assessor: public sets plus our own examples, on our labels.

`collect()` reads the sources (`sources`: our written sections and conversations, the public
sets from installed data packages), labels public prompts (`labels`), derives wrapped,
obfuscated and hidden variants of the asks (`transforms`), removes anything that matches a
test set (`guard`: Strata-Sword and our held-out sets are evaluation only), and assigns a
fixed, group-aware train/valid/test split (`split`). `write()` saves JSONL plus a provenance
file with counts per source, label and split (`write`).

A missing package is skipped and reported in the provenance (never silently).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oyster.assess.dataset.example import SEED, TEST_SHARE, VALID_SHARE, Example, make_example
from oyster.assess.dataset.guard import find_leaks, strata_rows, unique, without_leaks
from oyster.assess.dataset.labels import categories_for, guess_form
from oyster.assess.dataset.sources import (
    PUBLIC,
    conversations,
    is_translation,
    package_dir,
    pyrit_templates,
    translated,
    translation_check,
    written,
)
from oyster.assess.dataset.split import assign_splits
from oyster.assess.dataset.transforms import FORMS, hidden, pyrit_applied, wrapped
from oyster.assess.dataset.write import counts, load_jsonl, write
from oyster.assess.leakage import (
    EmbeddingGuard,
    Leak,
    NgramGuard,
    ProtectedText,
    normalise,
    protected_texts,
)

__all__ = [
    "SEED",
    "TEST_SHARE",
    "VALID_SHARE",
    "Example",
    "categories_for",
    "collect",
    "guess_form",
    "is_translation",
    "load_jsonl",
    "normalise",
    "strata_rows",
    "translation_check",
    "write",
]

Embed = Callable[[list[str]], Any]  # texts -> (n, dim) unit rows
PUBLIC_ASKS = 600  # public English asks that get wrappers, techniques and hiding


@dataclass
class Asks:
    """The asks transforms are applied to, drawn from the collected examples."""

    public_en: list[Example]  # public English harmful asks, shuffled
    ours: list[Example]  # harmful asks we wrote (all Chinese ones are ours)
    translated: list[Example]  # translations of harmful asks
    benign: list[Example]  # short harmless asks we wrote
    rng: random.Random  # the stream the public asks' wrappers draw from
    pyrit_root: Path | None
    wrap_per_ask: int


def _ask_rng(ask: Example) -> random.Random:
    # one random stream per ask, so adding examples leaves every other ask's variants unchanged
    return random.Random(f"{SEED}:{ask.group}:{normalise(ask.text)}")


def _wrapped_ours(a: Asks) -> Iterable[Example]:
    for ask in a.ours:
        yield from wrapped([ask], _ask_rng(ask), a.wrap_per_ask * 2)


def _wrapped_translations(a: Asks) -> Iterable[Example]:
    for ask in a.translated:  # one wrapper each: their originals already have several
        yield from wrapped([ask], _ask_rng(ask), 1)


def _pyrit_jailbreaks(a: Asks) -> Iterable[Example]:
    if a.pyrit_root is None:
        return []
    rng = random.Random(SEED + 2)
    templates = pyrit_templates(a.pyrit_root)
    templates = [templates[i] for i in sorted(rng.sample(range(len(templates)),
                                                         min(350, len(templates))))]
    return list(pyrit_applied(templates, a.public_en, rng))


def _harmless_in_odd_forms(a: Asks) -> Iterable[Example]:
    for e in a.benign:  # harmless content in odd forms stays R0
        form_rng = random.Random(f"{SEED}:form:{normalise(e.text)}")
        if form_rng.random() < 0.15:
            fn = form_rng.choice(FORMS)
            yield make_example(fn(e.text, form_rng), "R0", "benign", ["none"],
                               f"{e.source}+form", e.group, technique=fn.__name__.strip("_"))
        elif form_rng.random() < 0.25:
            # the same wrappers around a harmless ask: the wrapper alone is not the harm,
            # so the heads must read what is inside it
            w = next(wrapped([e], form_rng, 1))
            yield make_example(w.text, "R0", "benign", ["none"], f"{e.source}+wrapped",
                               e.group, form="instruction", technique=w.technique,
                               wrapper=w.meta["wrapper"])


# What is derived from the asks, in this order (the first of two equal texts is kept).
DERIVED: tuple[tuple[str, Callable[[Asks], Iterable[Example]]], ...] = (
    ("wrapped public asks",
     lambda a: wrapped(a.public_en[:PUBLIC_ASKS], a.rng, a.wrap_per_ask)),
    ("wrapped asks of ours", _wrapped_ours),
    ("wrapped translations", _wrapped_translations),
    ("PyRIT jailbreak templates", _pyrit_jailbreaks),
    ("harmless asks in odd forms", _harmless_in_odd_forms),
    ("hidden harmful asks",
     lambda a: hidden([*a.ours, *a.public_en[:PUBLIC_ASKS], *a.translated], benign=False)),
    ("hidden harmless asks", lambda a: hidden(a.benign, benign=True)),
)


def _asks(kept: list[Example], rng: random.Random, pyrit_root: Path | None,
          wrap_per_ask: int) -> Asks:
    # harmful asks that wrappers and techniques are applied to (short, categorised)
    harmful = [e for e in kept if e.level == "R2" and e.categories and len(e.text) <= 300
               and not e.technique and e.source != "weighted_safety"
               and not e.meta.get("nowrap")]
    public_en = [e for e in harmful if e.lang == "en" and not e.source.startswith("written:")]
    rng.shuffle(public_en)
    return Asks(
        public_en=public_en,
        ours=[e for e in harmful if (e.lang == "zh" or e.source.startswith("written:"))
              and not is_translation(e)],
        translated=[e for e in harmful if is_translation(e)],
        benign=[e for e in kept if e.level == "R0" and e.source.startswith("written:benign")
                and len(e.text) < 200],
        rng=rng, pyrit_root=pyrit_root, wrap_per_ask=wrap_per_ask)


def collect(shared: Path | None = None, *, wrap_per_ask: int = 3,
            report: dict[str, Any] | None = None, embed: Embed | None = None,
            protected: list[ProtectedText] | None = None) -> list[Example]:
    """All labelled examples, test-set leaks removed, split assigned.

    Leaks are found by the n-gram guard and, when `embed` is given, by the embedding guard
    too (`oyster.assess.leakage`); an example that leaks takes its whole group with it (the
    ask, its wrapped variants and its translation). `protected` defaults to every test set
    (`protected_texts(shared)`, `shared` the shared-data directory), which raises when
    Strata-Sword is missing."""
    rng = random.Random(SEED)
    prov: dict[str, Any] = report if report is not None else {}
    prov.setdefault("skipped_sources", [])
    prov["seed"] = SEED
    roots = {name: package_dir(name) for source in PUBLIC for name in source.packages}
    guarded = protected if protected is not None else protected_texts(shared)
    ngram = NgramGuard(guarded)
    base: list[Example] = [*written(), *conversations()]
    for source in PUBLIC:
        found = [roots[name] for name in source.packages]
        if all(root is None for root in found):
            prov["skipped_sources"].append(source.skip_note())
            continue
        base.extend(source.read(*found))
    # the public sets are English and some of our sections Chinese only: translations give
    # both languages the same asks
    base.extend(translated([e for e in base if not e.source.startswith("written:")], "zh"))
    base.extend(translated([e for e in base if e.source.startswith("written:")
                            and e.lang == "zh"], "en"))

    leaked: dict[str, Leak] = {}  # group -> the leak that removed it
    dropped = Counter[str]()
    kept = unique(base, dropped)
    find_leaks(kept, ngram.leaks([e.text for e in kept]), leaked)
    kept = without_leaks(kept, leaked, dropped)

    asks = _asks(kept, rng, roots["pyrit"], wrap_per_ask)
    extra = [ex for _, derive in DERIVED for ex in derive(asks)]
    seen = {normalise(e.text) for e in kept}
    extra = [e for e in unique(extra, dropped) if normalise(e.text) not in seen]
    find_leaks(extra, ngram.leaks([e.text for e in extra]), leaked)
    kept.extend(extra)
    if embed is not None:
        emb_guard = EmbeddingGuard(guarded, embed)
        find_leaks(kept, emb_guard.leaks_from_vectors([e.text for e in kept],
                                                      embed([e.text for e in kept])), leaked)
    kept = without_leaks(kept, leaked, dropped)
    assign_splits(kept)

    prov["dropped"] = dict(sorted(dropped.items()))
    prov["leak_guard"] = {
        "protected_texts": dict(sorted(Counter(p.source for p in guarded).items())),
        "ngram_jaccard": ngram.threshold,
        "embedding_cosine": emb_guard.threshold if embed is not None else None,
        "groups_dropped_by": dict(sorted(Counter(
            f"{lk.measure}:{lk.protected.source.split(':')[0]}:"
            f"{lk.protected.source.split(':')[1]}" for lk in leaked.values()).items())),
    }
    prov["counts"] = counts(kept)
    return kept
