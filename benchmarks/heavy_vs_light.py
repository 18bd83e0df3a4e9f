"""Latency of a small request while a maximal one runs, through the real proxy (uvicorn on
127.0.0.1, `POST /v1/decide`, the default assessor).

    python benchmarks/heavy_vs_light.py [--label after] [--light 12]

Measures a one-line request alone, then the same request repeatedly while heavy requests run
back to back in another thread:
- `issue`: the heavy request of issue #15 (200 user messages of 4,800 characters, 960 KB,
  inside every limit the proxy had then);
- `maximal`: the largest request the current limits accept (user turns filling the
  embedding budget, assistant turns filling the character budget); skipped when the code
  under test has no such limits.
Run it once against each tree (PYTHONPATH) to compare before and after; each run prints a
table and writes benchmarks/results/heavy_vs_light-LABEL.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

LIGHT = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
WORDS = ["the", "of", "and", "to", "in", "is", "you", "that", "it", "was", "for", "on", "are",
         "as", "with", "they", "at", "be", "this", "have", "from", "or", "one", "had", "by",
         "word", "but", "not", "what", "all", "were", "we", "when", "your", "can", "said",
         "there", "use", "each", "which", "she", "do", "how", "their", "if", "will", "up",
         "other", "about", "out", "many", "then", "them", "these", "so", "some", "would",
         "make", "like", "into", "time", "has", "look", "two", "more", "write", "go", "see",
         "number", "no", "way", "could", "people", "my", "than", "first", "water", "been",
         "call", "who", "oil", "its", "now", "find", "long", "down", "day", "did", "get",
         "come", "made", "may", "part"]


def _text(chars: int, seed: int) -> str:
    words, n, i = [], 0, seed
    while n < chars:
        w = WORDS[(i * 7919) % len(WORDS)]
        words.append(w)
        n += len(w) + 1
        i += 1
    return " ".join(words)[:chars]


def issue_heavy() -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": _text(4_800, i)} for i in range(200)]}


def maximal_heavy(limits: Any) -> dict[str, Any]:
    """User turns of one embedder window each until the embedding budget is nearly spent,
    assistant turns filling what the character budget leaves."""
    per_turn = 600  # under one window of English text, so a turn counts whole
    users = max(1, (limits.max_embedded_chars - per_turn) // per_turn - 1)
    users = min(users, limits.max_messages // 2)
    spare = limits.max_total_chars - users * per_turn
    assistant = min(limits.max_message_chars, max(1, spare // users - 10))
    messages = []
    for i in range(users):
        if i:
            messages.append({"role": "assistant", "content": _text(assistant, 10_000 + i)})
        messages.append({"role": "user", "content": _text(per_turn, i)})
    return {"messages": messages}


def _time(client: httpx.Client, body: dict[str, Any]) -> tuple[float, int]:
    started = time.perf_counter()
    r = client.post("/v1/decide", json=body)
    return time.perf_counter() - started, r.status_code


def measure(url: str, heavy: dict[str, Any] | None, light_n: int) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=600) as client:
        _time(client, LIGHT)  # warm the embedder
        alone = [_time(client, LIGHT)[0] for _ in range(light_n)]
        if heavy is None:
            return {"alone_ms": [round(x * 1000, 1) for x in alone]}
        heavy_times: list[tuple[float, int]] = []
        stop = threading.Event()

        def run_heavy() -> None:
            with httpx.Client(base_url=url, timeout=600) as own:
                while not stop.is_set():
                    heavy_times.append(_time(own, heavy))

        worker = threading.Thread(target=run_heavy)
        worker.start()
        time.sleep(1.0)  # let the first heavy request get going
        during = [_time(client, LIGHT)[0] for _ in range(light_n)]
        stop.set()
        worker.join()
    return {"alone_ms": [round(x * 1000, 1) for x in alone],
            "during_ms": [round(x * 1000, 1) for x in during],
            "heavy_s": [round(t, 2) for t, _ in heavy_times],
            "heavy_status": sorted({s for _, s in heavy_times})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="after")
    parser.add_argument("--light", type=int, default=12, help="light requests per phase")
    args = parser.parse_args()

    from oyster.engine import Engine
    from oyster.serve.app import create_app
    from oyster.serve.audit import AuditLog
    from oyster.serve.testing import ServerThread

    engine = Engine()
    settings = engine.policy.serve.model_copy(update={"rate_limit_per_minute": 1_000_000})
    limits = getattr(engine.policy, "limits", None)
    heavies = {"issue": issue_heavy()}
    if limits is not None:
        heavies["maximal"] = maximal_heavy(limits)
    results: dict[str, Any] = {"label": args.label}
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(settings, engine, None, AuditLog(Path(tmp) / "a.db",
                                                          engine.policy.audit))
        with ServerThread(app) as server:
            for name, body in heavies.items():
                size = len(json.dumps(body))
                r = measure(server.url, body, args.light)
                r["heavy_bytes"] = size
                results[name] = r
    print(f"{'heavy request':16} {'bytes':>9} {'heavy s (status)':>18} {'light alone ms':>15} "
          f"{'light during ms':>16} {'ratio':>6}")
    for name in heavies:
        r = results[name]
        alone = statistics.median(r["alone_ms"])
        during = statistics.median(r["during_ms"])
        r["ratio_median"] = round(during / alone, 2)
        heavy = f"{statistics.median(r['heavy_s']):.1f} ({','.join(map(str, r['heavy_status']))})"
        print(f"{name:16} {r['heavy_bytes']:>9} {heavy:>18} {alone:>15.0f} {during:>16.0f} "
              f"{r['ratio_median']:>6.2f}")
    out = Path(__file__).parent / "results" / f"heavy_vs_light-{args.label}.json"
    out.write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
