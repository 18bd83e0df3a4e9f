"""Latency of a small request while a maximal one runs, through the real proxy (uvicorn on
127.0.0.1, `POST /v1/decide`, the default assessor).

    python benchmarks/heavy_vs_light.py [--label after] [--light 12]

Measures one-line requests alone, then one after another while one heavy request runs in
another thread (each light text is new, so no cache answers it):
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


def _light(i: int) -> dict[str, Any]:
    """A one-line request; a new text each time, so no cache answers for it."""
    return {"messages": [{"role": "user", "content": f"What is the capital of France? ({i})"}]}


def _time(client: httpx.Client, body: dict[str, Any]) -> tuple[float, int]:
    started = time.perf_counter()
    r = client.post("/v1/decide", json=body)
    return time.perf_counter() - started, r.status_code


def measure(url: str, heavy: dict[str, Any], light_n: int, cap_s: float, phase: int
            ) -> dict[str, Any]:
    """Light requests alone, then one after another for as long as one heavy request runs
    (at most `cap_s`). `phase` keeps each phase's light texts new."""
    base = phase * 100_000
    with httpx.Client(base_url=url, timeout=600) as client:
        _time(client, _light(base - 1))  # warm the embedder
        alone = [_time(client, _light(base + i))[0] for i in range(light_n)]
        result: dict[str, Any] = {}

        def run_heavy() -> None:
            with httpx.Client(base_url=url, timeout=900) as own:
                result["heavy"] = _time(own, heavy)

        worker = threading.Thread(target=run_heavy)
        worker.start()
        time.sleep(0.5)
        during = []
        started = time.monotonic()
        i = base + 1_000
        while worker.is_alive() and time.monotonic() - started < cap_s:
            during.append(_time(client, _light(i))[0])
            i += 1
        worker.join()
    heavy_s, status = result["heavy"]
    return {"alone_ms": [round(x * 1000, 1) for x in alone],
            "during_ms": [round(x * 1000, 1) for x in during],
            "heavy_s": round(heavy_s, 2), "heavy_status": status}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="after")
    parser.add_argument("--light", type=int, default=10, help="light requests alone")
    parser.add_argument("--cap", type=float, default=150.0,
                        help="seconds of light requests during the heavy one, at most")
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
            for phase, (name, body) in enumerate(heavies.items()):
                size = len(json.dumps(body))
                r = measure(server.url, body, args.light, args.cap, phase)
                r["heavy_bytes"] = size
                results[name] = r
    print(f"{'heavy request':14} {'bytes':>8} {'heavy s (status)':>17} {'light alone ms':>15} "
          f"{'during: n':>9} {'median':>7} {'p95':>7} {'max':>7} {'ratio':>6}")
    for name in heavies:
        r = results[name]
        alone = statistics.median(r["alone_ms"])
        during = sorted(r["during_ms"]) or [alone]
        p95 = during[min(len(during) - 1, int(0.95 * len(during)))]
        r["ratio_median"] = round(statistics.median(during) / alone, 2)
        heavy = f"{r['heavy_s']:.1f} ({r['heavy_status']})"
        print(f"{name:14} {r['heavy_bytes']:>8} {heavy:>17} {alone:>15.0f} "
              f"{len(r['during_ms']):>9} {statistics.median(during):>7.0f} {p95:>7.0f} "
              f"{during[-1]:>7.0f} {r['ratio_median']:>6.2f}")
    out = Path(__file__).parent / "results" / f"heavy_vs_light-{args.label}.json"
    out.write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
