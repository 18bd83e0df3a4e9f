"""Generation speed of a chat backend on the prompts the responder really sends.

Each prompt is one turn of the demo script (`oyster/respond/demo.yaml`) steered by its
decision's rendered chain, so the system prompt is as long as in production. Reports the
model load time, first-token latency, and decode and end-to-end tokens per second.

    python benchmarks/generation_speed.py                       # embedded SmolLM2-135M
    python benchmarks/generation_speed.py --backend openai:MODEL@URL --runs 3

Prints a table and writes JSON (default: benchmarks/results/generation_speed.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from oyster.backends import from_spec
from oyster.backends.base import GenerationParams
from oyster.engine import Engine
from oyster.respond import instructions_for
from oyster.respond.demo import demo_script
from oyster.types import Message

OUT = Path(__file__).parent / "results" / "generation_speed.json"


@dataclass(frozen=True)
class Sample:
    run: int
    strategy: str
    tokens: int
    first_token_ms: float | None
    latency_s: float
    decode_tokens_per_s: float | None
    end_to_end_tokens_per_s: float | None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="embedded")
    parser.add_argument("--runs", type=int, default=3, help="passes over the prompts")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for the embedded backend (default: its own)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    engine = Engine()
    prompts = []
    for scene in demo_script().scenes:
        turn = scene.turns[0]
        decision = engine.decide(turn)
        prompts.append((decision.strategy,
                        instructions_for(decision, engine.policy,
                                         [Message(role="user", content=turn)])))
    backend = from_spec(args.backend, **({"n_threads": args.threads} if args.threads else {}))
    params = GenerationParams(max_tokens=args.max_tokens, timeout=3600.0)

    start = time.perf_counter()
    backend.complete([Message(role="user", content="Hi")], GenerationParams(max_tokens=1))
    load_s = time.perf_counter() - start

    rows: list[Sample] = []
    for run in range(args.runs):
        for strategy, messages in prompts:
            c = backend.complete(messages, params)
            tokens = c.completion_tokens or 0
            latency = c.latency_s or 0.0
            first = c.first_token_s
            decode_s = latency - (first or 0.0)
            rows.append(Sample(
                run=run, strategy=strategy, tokens=tokens,
                first_token_ms=round(first * 1000, 1) if first is not None else None,
                latency_s=round(latency, 3),
                decode_tokens_per_s=(round((tokens - 1) / decode_s, 1)
                                     if tokens > 1 and decode_s > 0 else None),
                end_to_end_tokens_per_s=round(tokens / latency, 1) if latency else None,
            ))

    def median(key: str) -> float | None:
        values = [v for r in rows if (v := getattr(r, key)) is not None]
        return round(float(statistics.median(values)), 1) if values else None

    summary = {
        "backend": backend.spec, "machine": f"{platform.processor() or platform.machine()}, "
                                            f"{platform.system()}, {os.cpu_count()} cores",
        "threads": args.threads, "runs": args.runs, "prompts": len(prompts), "max_tokens": args.max_tokens,
        "load_and_warmup_s": round(load_s, 3),
        "median_first_token_ms": median("first_token_ms"),
        "median_decode_tokens_per_s": median("decode_tokens_per_s"),
        "median_end_to_end_tokens_per_s": median("end_to_end_tokens_per_s"),
        "median_tokens": median("tokens"),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }

    table = Table(title=f"generation speed — {backend.spec}")
    for col in ("strategy", "tokens", "first token ms", "decode tok/s", "end-to-end tok/s"):
        table.add_column(col, justify="right" if col != "strategy" else "left")
    for r in rows:
        table.add_row(r.strategy, str(r.tokens), str(r.first_token_ms),
                      str(r.decode_tokens_per_s), str(r.end_to_end_tokens_per_s))
    table.add_row("median", str(summary["median_tokens"]), str(summary["median_first_token_ms"]),
                  str(summary["median_decode_tokens_per_s"]),
                  str(summary["median_end_to_end_tokens_per_s"]), style="bold")
    console = Console()
    console.print(table)
    console.print(f"load + warm-up: {summary['load_and_warmup_s']} s · "
                  f"1-minute load average during the run: {summary['load_average_1m']}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": [asdict(r) for r in rows]},
                                   indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
