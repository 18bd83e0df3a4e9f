"""Two reply-moderation heads side by side on the same held-out test split (report only).

    python benchmarks/moderation_heads.py --before OLD_HEAD.npz [--after NEW_HEAD.npz]
        [--baseline-rev REV] [--json OUT]

Each head is read at its own thresholds (chosen on its validation split when it was trained).
Rows: recall on harmful replies and false alarms on harmless ones, per strictness and
language, on

- `original`: the test replies that existed at `--baseline-rev` (our written replies of
  that revision plus every public and generated source: what the old head's numbers were
  measured on);
- `added`: the written test replies added since (risky-topic-but-safe explanations and the
  matching harmful ones);
- `all`: both;

then what the stream hold does on the test replies longer than one stream window (the
proxy's first window, `serve.stream_check_chars`): of the harmful replies whose opening
passes `normal` while the whole reply is flagged (the opening would be shown before the
harm), how many openings are held, at the head's hold threshold and at `strict` (what
streams used before holds had their own threshold); and how many harmless replies have a
window held (their stream waits for the end); then ms per reply (embedding included, the
embedder's cache cleared before each head, the same 60 replies), and the moderator's
verdict at `normal` on the scripted upstream replies of `tests/serve/scripted_replies.py`
(written for the proxy tests, never trained on).
Nothing here chooses anything: the test split is only reported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "serve"))

from oyster.moderate.moderator import Moderator, ReplyHead, packaged_head_path  # noqa: E402
from oyster.moderate.sources import OPENERS, LabelledReply, all_replies  # noqa: E402
from oyster.moderate.train import EMBEDDER, _segments, embed, measure, reply_scores  # noqa: E402
from oyster.taxonomy.policy import ModerationSettings, ServeSettings  # noqa: E402

STRICTNESS = ("lenient", "normal", "strict")


def written_at(rev: str) -> set[str]:
    """Every written reply text of the moderator's data at git revision `rev`."""
    texts: set[str] = set()
    for language in ("en", "zh"):
        raw = subprocess.run(
            ["git", "-C", str(ROOT), "show",
             f"{rev}:src/oyster/moderate/data/written_{language}.yaml"],
            check=True, capture_output=True, text=True).stdout
        for section in yaml.safe_load(raw).values():
            for items in section.values():
                texts |= {t.strip() for t in items}
    return texts


def unopened(r: LabelledReply) -> str:
    """The reply without the compliance opener a `+opener` copy carries."""
    if r.source.endswith("+opener"):
        for opener in OPENERS[r.language]:
            if r.text.startswith(opener):
                return r.text[len(opener):].strip()
    return r.text


def rows(scores: np.ndarray, replies: list[LabelledReply], head: ReplyHead) -> dict[str, Any]:
    return measure(scores, replies, head.thresholds)


def hold_rows(head: ReplyHead, test: list[LabelledReply], scores: np.ndarray
              ) -> dict[str, Any]:
    window = ServeSettings().stream_check_chars
    long = [i for i, r in enumerate(test) if len(r.text) > window]
    openings = [replace(test[i], text=test[i].text[:window]) for i in long]
    texts, owner = _segments(openings, None)
    opening = reply_scores(head, embed(texts), owner, len(openings))
    whole = scores[long]
    harmful = np.array([test[i].harmful for i in long], dtype=bool)
    normal, strict = head.thresholds["normal"], head.thresholds["strict"]
    hold = head.hold_threshold if head.hold_threshold is not None else strict
    shown_early = harmful & (opening < normal) & (whole >= normal)
    return {"window_chars": window, "hold_threshold": hold,
            "long_harmful": int(harmful.sum()), "long_harmless": int((~harmful).sum()),
            "opening_shown_before_harm": int(shown_early.sum()),
            "held_at_hold": int((opening[shown_early] >= hold).sum()),
            "held_at_strict": int((opening[shown_early] >= strict).sum()),
            "harmless_held_at_hold": round(float((whole[~harmful] >= hold).mean()), 4),
            "harmless_held_at_strict": round(float((whole[~harmful] >= strict).mean()), 4)}


def ms_per_reply(head_path: Path, sample: list[LabelledReply]) -> float:
    from oyster.embeddings import from_spec

    moderator = Moderator(ModerationSettings(), head_path)
    cache_clear = getattr(from_spec(EMBEDDER), "cache_clear", None)
    if cache_clear:
        cache_clear()
    started = time.perf_counter()
    for r in sample:
        moderator.moderate(r.text, "normal")
    return (time.perf_counter() - started) * 1000 / len(sample)


def scripted(head_path: Path) -> dict[str, Any]:
    from scripted_replies import HARMFUL, HARMLESS

    moderator = Moderator(ModerationSettings(), head_path)
    out: dict[str, Any] = {}
    for name, items in (("harmful", HARMFUL), ("harmless", HARMLESS)):
        verdicts = {s.name: moderator.moderate(s.reply, "normal") for s in items}
        out[name] = {"n": len(items), "flagged": sum(v.flagged for v in verdicts.values()),
                     "scores": {k: v.score for k, v in verdicts.items()}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the earlier head (.npz)")
    ap.add_argument("--after", default=str(packaged_head_path()), help="the newer head")
    ap.add_argument("--baseline-rev", default="37f0adb",
                    help="git revision whose written replies make up `original`")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" /
                                          "moderation_heads.json"))
    args = ap.parse_args()

    test = [r for r in all_replies() if r.split == "test"]
    old_written = written_at(args.baseline_rev)
    added = np.array([r.source.startswith("written_") and unopened(r) not in old_written
                      for r in test])
    texts, owner = _segments(test, None)
    X = embed(texts)
    heads = {"before": Path(args.before), "after": Path(args.after)}
    subsets = {"original": ~added, "added": added, "all": np.ones(len(test), dtype=bool)}
    result: dict[str, Any] = {"test_replies": {k: int(v.sum()) for k, v in subsets.items()}}
    for label, path in heads.items():
        head = ReplyHead.load(path)
        scores = reply_scores(head, X, owner, len(test))
        result[label] = {"thresholds": head.thresholds, "model": head.meta}
        for subset, mask in subsets.items():
            idx = np.flatnonzero(mask)
            result[label][subset] = rows(scores[idx], [test[i] for i in idx], head)
        result[label]["hold"] = hold_rows(head, test, scores)
    sample = test[:60]
    for label, path in heads.items():
        result[label]["ms_per_reply"] = round(ms_per_reply(path, sample), 1)
        result[label]["scripted"] = scripted(path)
    result["ms_sample"] = {"replies": len(sample),
                           "mean_chars": round(float(np.mean([len(r.text) for r in sample])))}

    print(f"test split: {result['test_replies']}")
    print("| subset | strictness | head | threshold | recall EN | recall ZH | false alarms EN "
          "| false alarms ZH | recall all | false alarms all |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for subset in subsets:
        for strictness in STRICTNESS:
            for label in heads:
                r = result[label][subset]
                cell = {lang: r[lang][strictness] for lang in ("en", "zh", "all")}
                print(f"| {subset} | {strictness} | {label} | "
                      f"{result[label]['thresholds'][strictness]:.3f} | "
                      f"{_f(cell['en']['recall'])} | {_f(cell['zh']['recall'])} | "
                      f"{_f(cell['en']['false_alarms'])} | {_f(cell['zh']['false_alarms'])} | "
                      f"{_f(cell['all']['recall'])} | {_f(cell['all']['false_alarms'])} |")
    for label in heads:
        h = result[label]["hold"]
        print(f"{label}: hold at {h['hold_threshold']:.3f}: of {h['long_harmful']} harmful "
              f"replies over {h['window_chars']} chars, {h['opening_shown_before_harm']} have "
              f"an opening that passes normal before the harm shows; held: "
              f"{h['held_at_hold']} (hold), {h['held_at_strict']} (strict); harmless replies "
              f"over {h['window_chars']} chars with a held window: "
              f"{h['harmless_held_at_hold']:.3f} (hold), {h['harmless_held_at_strict']:.3f} "
              f"(strict) of {h['long_harmless']}")
    for label in heads:
        s = result[label]["scripted"]
        print(f"{label}: {result[label]['ms_per_reply']} ms per reply "
              f"({len(sample)} replies, mean {result['ms_sample']['mean_chars']} chars); "
              f"scripted upstream replies flagged at normal: harmful "
              f"{s['harmful']['flagged']}/{s['harmful']['n']}, harmless "
              f"{s['harmless']['flagged']}/{s['harmless']['n']}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote {out}")


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    main()
