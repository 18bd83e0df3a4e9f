"""Calibrate the reply relevance check (oyster.respond.coherence) on matched vs mismatched
(message, reply) pairs, and write `src/oyster/respond/relevance_calibration.json`.

Pairs (never the test sets):
- uncensorbench 0.3.7 (MIT): each prompt with its refused and its compliant reply (en);
- PyRIT 1.1.0 (MIT) refusal-scorer CSVs: objective and assistant response (en);
- our judges' training replies (`judges/data/written_replies.jsonl`, en/zh);
- our written pairs (`respond/data/written_pairs.yaml`, en/zh).
Background bank (for the margin): the assessor's written training prompts, per language.

A score is a *margin*: similarity to the conversation's anchors minus the mean similarity
to the bank, so a reply that is equally close to any message scores about 0. Items are
split in two halves by a hash of the message: thresholds are chosen on `train` (at most
2 % false alarms on matched replies) and reported on `val`.

    python scripts/calibrate_reply_checks.py            # writes the calibration file
    python scripts/calibrate_reply_checks.py --dry-run  # prints the table only
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import yaml

from oyster.embeddings import from_spec
from oyster.respond.coherence import sentence_weight, split_sentences
from oyster.respond.verify import default_rules

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "oyster"
OUT = PKG / "respond" / "relevance_calibration.json"
TARGET_FALSE_ALARMS = 0.02
BANK_SIZE = 150


def _site(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    assert spec and spec.submodule_search_locations, f"{package} is not installed"
    return Path(next(iter(spec.submodule_search_locations)))


def load_pairs() -> list[dict[str, str]]:
    pairs = []
    ub = json.loads((_site("uncensorbench") / "data" / "prompts.json").read_text())["prompts"]
    for x in ub:
        for key in ("censored_response", "uncensored_response"):
            pairs.append({"lang": "en", "message": x["prompt"], "reply": x[key],
                          "source": "uncensorbench"})
    folder = _site("pyrit") / "datasets" / "scorer_evals" / "refusal_scorer"
    for name in ("refusal.csv", "refusal_extra.csv"):
        lines = [ln for ln in (folder / name).read_text("utf-8").splitlines()
                 if not ln.startswith("#")]
        for row in csv.DictReader(lines):
            if row.get("objective") and row.get("assistant_response"):
                pairs.append({"lang": "en", "message": row["objective"],
                              "reply": row["assistant_response"], "source": "pyrit"})
    for line in (PKG / "judges" / "data" / "written_replies.jsonl").read_text().splitlines():
        r = json.loads(line)
        pairs.append({"lang": r["lang"], "message": r["query"], "reply": r["reply"],
                      "source": "judges_written"})
    for p in yaml.safe_load((PKG / "respond" / "data" / "written_pairs.yaml").read_text())["pairs"]:
        pairs.append({"lang": p["lang"], "message": p["message"], "reply": p["reply"],
                      "source": "respond_written"})
    return pairs


def load_bank(language: str, exclude: set[str]) -> list[str]:
    items: list[str] = []
    for path in sorted((PKG / "assess" / "data").glob("written*.yaml")):
        for section in yaml.safe_load(path.read_text()).get("sections", []):
            if section.get("lang") == language:
                items += [i for i in section.get("items", []) if isinstance(i, str)]
    items = sorted({i for i in items if i not in exclude})
    return random.Random(7).sample(items, min(BANK_SIZE, len(items)))


def half(message: str) -> str:
    return "train" if hashlib.sha1(message.encode()).digest()[0] % 2 == 0 else "val"


def threshold(values: list[float]) -> float:
    """The largest cut with at most TARGET_FALSE_ALARMS of `values` below it."""
    return float(np.quantile(np.array(values), TARGET_FALSE_ALARMS))


def rate(values: list[float], cut: float) -> float:
    return round(float(np.mean(np.array(values) < cut)), 4) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    rules = default_rules().relevance
    embedder = from_spec(rules.embedder)
    pairs = load_pairs()
    messages = {p["message"] for p in pairs}
    generic = sorted({g for gs in rules.generic.values() for g in gs})
    rng = random.Random(11)

    bank_mean: dict[str, list[float]] = {}
    table: dict[str, dict[str, dict[str, float]]] = {}
    cuts: dict[str, dict[str, float]] = {}
    for lang in ("en", "zh"):
        mine = [p for p in pairs if p["lang"] == lang]
        bank_v = embedder.embed(load_bank(lang, messages))
        mean = bank_v.mean(axis=0)
        bank_mean[lang] = [round(float(x), 6) for x in mean]
        msg_v = embedder.embed([p["message"] for p in mine])
        rep_v = embedder.embed([p["reply"] for p in mine])
        gen_v = embedder.embed(generic)
        # whole reply: own message vs another item's message (same language)
        others = [rng.choice([j for j in range(len(mine)) if mine[j]["message"] != p["message"]])
                  for p in mine]
        base = rep_v @ mean
        own = (rep_v * msg_v).sum(1) - base
        other = (rep_v * msg_v[others]).sum(1) - base
        # sentences: the weakest sentence of a matched reply, and a sentence of another
        # item's reply placed in this one (a digression)
        sent_rows = []
        for i, p in enumerate(mine):
            sents = [s for s in split_sentences(p["reply"])
                     if sentence_weight(s) >= rules.min_sentence_words]
            foreign = [s for s in split_sentences(mine[others[i]]["reply"])
                       if sentence_weight(s) >= rules.min_sentence_words]
            if sents and foreign:
                sent_rows.append((i, sents, rng.choice(foreign)))
        flat = sorted({s for _, sents, f in sent_rows for s in [*sents, f]})
        sv = dict(zip(flat, embedder.embed(flat), strict=True))

        def sentence_margin(s: str, i: int) -> float:
            v = sv[s]  # noqa: B023
            anchors = np.vstack([msg_v[i][None, :], gen_v])  # noqa: B023
            return float((anchors @ v).max() - v @ mean)  # noqa: B023

        weakest = {i: min(sentence_margin(s, i) for s in sents) for i, sents, _ in sent_rows}
        intruder = {i: sentence_margin(f, i) for i, _, f in sent_rows}
        split = {"train": [i for i, p in enumerate(mine) if half(p["message"]) == "train"],
                 "val": [i for i, p in enumerate(mine) if half(p["message"]) == "val"]}
        cut_reply = threshold([own[i] for i in split["train"]])
        cut_sentence = threshold([weakest[i] for i in split["train"] if i in weakest])
        cuts[lang] = {"reply": round(cut_reply, 4), "sentence": round(cut_sentence, 4)}
        table[lang] = {}
        for name, idx in split.items():
            table[lang][name] = {
                "pairs": len(idx),
                "reply_false_alarms": rate([own[i] for i in idx], cut_reply),
                "reply_detected": rate([other[i] for i in idx], cut_reply),
                "sentence_false_alarms": rate([weakest[i] for i in idx if i in weakest],
                                              cut_sentence),
                "sentence_detected": rate([intruder[i] for i in idx if i in intruder],
                                          cut_sentence)}
    print(f"{'lang':5} {'split':6} {'pairs':>5}  reply FA  reply det  sent FA  sent det")
    for lang, by in table.items():
        for name, r in by.items():
            print(f"{lang:5} {name:6} {r['pairs']:5}  {r['reply_false_alarms']:8.3f}  "
                  f"{r['reply_detected']:9.3f}  {r['sentence_false_alarms']:7.3f}  "
                  f"{r['sentence_detected']:8.3f}")
    print("thresholds:", json.dumps(cuts))
    if args.dry_run:
        return
    sources: dict[str, int] = {}
    for p in pairs:
        sources[p["source"]] = sources.get(p["source"], 0) + 1
    OUT.write_text(json.dumps({
        "embedder": rules.embedder, "target_false_alarms": TARGET_FALSE_ALARMS,
        "thresholds": cuts, "results": table, "sources": sources,
        "bank": {"size": BANK_SIZE, "from": "assess/data/written*.yaml"},
        "bank_mean": bank_mean}, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
