"""One encode on one thread or on every core: the encoder (ONNX Runtime, float32 and int8)
by text length, side by side in one run.

    .venv/bin/python benchmarks/encoder_threads.py [--tokens 12 24 48 96 160 250] [--n 20]

For each precision and length (the first N tokens of a long English text): the p50 ms of
one call on one thread and on `--threads` threads (`E5Onnx.query(texts, threads=n)`,
its threads spinning only while a run lasts, as the embedder runs a lone encode when
nothing else in the process is encoding), whether the vectors are identical, and for two
callers at once the texts/s with each on one thread against each on the wide session
(what a caller that ignored the other would cost). The settings take turns within each
length. Prints a table, writes JSON (default: benchmarks/results/encoder_threads.json).
`WIDE_MIN_TOKENS` in `oyster.embeddings` is read from this.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import numpy as np
from _report import report
from decide_throughput import LONG_PROMPTS, _last_text

from oyster.e5format import E5File, packaged_model_path
from oyster.e5onnx import E5Onnx


def _p50_ms(run: object, n: int) -> float:
    assert callable(run)
    for _ in range(3):
        run()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        run()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _two_callers_per_s(run: object, n: int) -> float:
    assert callable(run)
    workers = [threading.Thread(target=lambda: [run() for _ in range(n)]) for _ in range(2)]
    t = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return 2 * n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=[12, 24, 48, 96, 160, 250])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--n", type=int, default=20, help="calls per setting and length")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                    "encoder_threads.json")
    args = ap.parse_args()
    f = E5File(packaged_model_path())
    source = " ".join(_last_text(p) for p in LONG_PROMPTS)
    rows = []
    for precision in ("int8", "float32"):
        model = E5Onnx(f, precision=precision)
        ids = model.tokenizer.encode(source)
        for n_tokens in args.tokens:
            feeds = model._feeds([ids[:n_tokens]])
            one, wide = model._session(1), model._session(args.threads)

            def run_on(session: object, feeds: dict[str, np.ndarray] = feeds) -> np.ndarray:
                return np.asarray(session.run(["emb"], feeds)[0])  # type: ignore[attr-defined]

            row: dict[str, object] = {"precision": precision, "tokens": n_tokens}
            row["one_thread_ms"] = round(_p50_ms(lambda s=one: run_on(s), args.n), 2)
            row[f"{args.threads}_threads_ms"] = round(_p50_ms(lambda s=wide: run_on(s),
                                                              args.n), 2)
            row["saved"] = f"{1 - row[f'{args.threads}_threads_ms'] / row['one_thread_ms']:.0%}"  # type: ignore[operator]
            row["same_vector"] = bool(np.array_equal(run_on(one), run_on(wide)))
            row["two_callers_one_thread_per_s"] = round(
                _two_callers_per_s(lambda s=one: run_on(s), args.n), 1)
            row[f"two_callers_{args.threads}_threads_per_s"] = round(
                _two_callers_per_s(lambda s=wide: run_on(s), args.n), 1)
            rows.append(row)
    report(f"encoder threads ({platform.machine()}, {os.cpu_count()} CPUs, "
           f"load {os.getloadavg()[0]:.1f})", rows, args.out, threads=args.threads, n=args.n,
           load_avg=round(os.getloadavg()[0], 2))


if __name__ == "__main__":
    main()
