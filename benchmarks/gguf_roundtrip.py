"""GGUF files side by side on llama.cpp: size, load time, decode speed, and how many greedy
replies match a reference file word for word.

Made for the export round trip: the packaged SmolLM2 (Q4_1) is the reference, and
`convert-embedded` followed by `export-gguf --outtype T` gives one file per type T.

    oyster train convert-embedded --out runs/smollm2
    for t in f16 q8_0 q4_1; do
      oyster train export-gguf runs/smollm2 --out runs/untrained-$t.gguf --outtype $t; done
    python benchmarks/gguf_roundtrip.py f16=runs/untrained-f16.gguf \\
        q8_0=runs/untrained-q8_0.gguf q4_1=runs/untrained-q4_1.gguf

The prompts are the first N of our Lingo-BP seed queries (training queries, not a test
set). Models take turns prompt by prompt, so load from other processes on a shared
machine falls on all of them alike. Prints a table and writes JSON (default:
benchmarks/results/gguf_roundtrip.json).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from oyster.backends.embedded import default_model_path
from oyster.lingobp import load_queries

OUT = Path(__file__).parent / "results" / "gguf_roundtrip.json"
SEEDS = Path(__file__).parents[1] / "src" / "oyster" / "lingobp" / "data" / "seed_queries.jsonl"


def common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="NAME=PATH.gguf")
    parser.add_argument("--reference", default=None,
                        help="the file replies are compared with (default: the packaged model)")
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from llama_cpp import Llama

    files = {"packaged": Path(args.reference) if args.reference else default_model_path()}
    for spec in args.models:
        name, _, path = spec.partition("=")
        files[name] = Path(path)
    prompts = [q.last_user_text for q in load_queries(SEEDS)[:args.prompts]]

    models: dict[str, Any] = {}
    stats: dict[str, dict[str, Any]] = {}
    for name, path in files.items():
        start = time.perf_counter()
        models[name] = Llama(model_path=str(path), n_ctx=2048, n_threads=args.threads,
                             verbose=False)
        stats[name] = {"file": str(path), "mb": round(path.stat().st_size / 1e6, 1),
                       "load_s": round(time.perf_counter() - start, 2), "tokens": 0,
                       "decode_s": 0.0, "replies": []}
    for prompt in prompts:
        for name, llm in models.items():
            start = time.perf_counter()
            r = llm.create_chat_completion(messages=[{"role": "user", "content": prompt}],
                                           max_tokens=args.max_tokens, temperature=0.0,
                                           repeat_penalty=1.1, seed=0)
            stats[name]["decode_s"] += time.perf_counter() - start
            stats[name]["tokens"] += r["usage"]["completion_tokens"]
            stats[name]["replies"].append(r["choices"][0]["message"]["content"])
    for llm in models.values():
        llm.close()

    reference = stats["packaged"]["replies"]
    table = Table(title=f"GGUF round trip, {len(prompts)} prompts, greedy, "
                        f"{args.max_tokens} new tokens, {args.threads} thread(s)")
    for col in ("model", "MB", "load s", "tok/s", "identical replies", "mean shared prefix"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, s in stats.items():
        s["tokens_per_s"] = round(s["tokens"] / s["decode_s"], 1) if s["decode_s"] else None
        s["decode_s"] = round(s["decode_s"], 2)
        s["identical"] = sum(a == b for a, b in zip(reference, s["replies"], strict=True))
        s["mean_shared_prefix_chars"] = round(
            sum(common_prefix(a, b) for a, b in zip(reference, s["replies"], strict=True))
            / len(prompts), 1)
        table.add_row(name, str(s["mb"]), str(s["load_s"]), str(s["tokens_per_s"]),
                      f"{s['identical']}/{len(prompts)}", str(s["mean_shared_prefix_chars"]))
    console = Console()
    console.print(table)
    load = round(os.getloadavg()[0], 2)
    console.print(f"1-minute load average at the end: {load}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"prompts": prompts, "max_tokens": args.max_tokens,
                                    "threads": args.threads, "load_average_1m": load,
                                    "models": stats}, indent=2, ensure_ascii=False) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
