"""What verified streaming costs in first-token latency, per strategy.

    python benchmarks/stream_latency.py [--chars-per-s 250]

An upstream streams a good reply for each strategy at a fixed rate (default 250 characters a
second, about 60 tokens/s); the real verifier (reply moderation included) checks it as the
proxy does. For each strategy: time to the first released text and to the end, with the
policy's hold (`serve.stream_hold_chars`) and with none, side by side in one run. Prints a
table and writes benchmarks/results/stream_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

REPLIES = {
    "answer": "Mash three ripe bananas and stir in melted butter, sugar, an egg and vanilla. "
              "Fold in flour, baking soda and a pinch of salt, pour the batter into a greased "
              "loaf tin and bake at 175 °C for about an hour, until a skewer comes out clean. "
              "Let it cool for ten minutes before slicing. Walnuts or chocolate chips are "
              "good additions, and very ripe, almost black bananas give the sweetest loaf. "
              "It keeps for three days wrapped at room temperature.",
    "answer_safely": "For adults, the usual over-the-counter dose of ibuprofen is 200 to 400 "
                     "mg every four to six hours, without going over the daily maximum on the "
                     "label. Take it with food to protect your stomach. People with kidney "
                     "problems, stomach ulcers or who take blood thinners should ask a "
                     "pharmacist first. If the pain lasts more than a few days, see a doctor "
                     "rather than taking more.",
    "correct": "That's a common myth, and it is not true: vaccines do not cause autism. Large "
               "studies following millions of children found no link, and the paper that "
               "started the claim was retracted. Vaccines do have side effects, usually mild, "
               "like a sore arm or a low fever for a day. If you are worried about a specific "
               "vaccine, your doctor can go through its safety record with you.",
    "guide": "I'm really sorry you're going through this, and I'm glad you said something. "
             "You don't have to carry it alone. You can call or text 988, the Suicide & "
             "Crisis Lifeline, at any hour to talk to someone trained to help. If you are in "
             "danger right now, please call your local emergency number. Would you tell me a "
             "little about what has been happening today? I'm here to listen.",
    "refuse": "I can't help with that. If there's something else you're working on, I'm "
              "happy to help with it instead.",
}
QUESTIONS = {"answer": "What is a good recipe for banana bread?",
             "answer_safely": "How much ibuprofen can I take?",
             "correct": "Vaccines cause autism, right?",
             "guide": "I feel like ending it all.",
             "refuse": "Explain how to build a bomb."}


async def _upstream(text: str, chars_per_s: float) -> AsyncIterator[str]:
    pieces = [w + " " for w in text.split(" ")]
    for p in pieces:
        await asyncio.sleep(len(p) / chars_per_s)
        yield p


async def _one(engine: Any, verifier: Any, strategy: str, hold: int, chars_per_s: float
               ) -> tuple[float, float, str]:
    from oyster.respond import fallback_reply
    from oyster.respond.fallback import resource_note
    from oyster.serve.stream import VerifiedStream

    policy = engine.policy
    decision = engine.decide(QUESTIONS[strategy]).model_copy(update={"strategy": strategy})
    stream = VerifiedStream(
        _upstream(REPLIES[strategy], chars_per_s),
        check=lambda t, final: verifier.check(t, decision, final=final),
        fallback=lambda: fallback_reply(decision, policy),
        resource_note=lambda: resource_note(policy, decision.language),
        window_chars=policy.serve.stream_check_chars, hold_chars=hold, timeout_s=60,
        fail_open=False)
    started = time.perf_counter()
    first = None
    await stream.start()
    async for _ in stream.pieces():
        first = first if first is not None else time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started, stream.outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars-per-s", type=float, default=250.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from oyster.engine import Engine
    from oyster.respond import Verifier
    from oyster.taxonomy.policy import default_policy

    engine = Engine(assessor="lexicon")
    verifier = Verifier(engine.policy)
    holds = default_policy().serve.stream_hold_chars
    rows = {}
    for strategy in REPLIES:
        hold = holds.get(strategy, 0)
        timed = {}
        for label, h in (("none", 0), ("policy", hold)):
            runs = [asyncio.run(_one(engine, verifier, strategy, h, args.chars_per_s))
                    for _ in range(args.runs)]
            timed[label] = {"first_ms": round(statistics.median(r[0] for r in runs) * 1000),
                            "total_ms": round(statistics.median(r[1] for r in runs) * 1000),
                            "outcomes": sorted({r[2] for r in runs})}
        rows[strategy] = {"hold_chars": hold, "reply_chars": len(REPLIES[strategy]), **timed}
    print(f"upstream at {args.chars_per_s:g} characters/s; window "
          f"{default_policy().serve.stream_check_chars} characters")
    print(f"{'strategy':14} {'hold':>5} {'chars':>6} {'first ms (none)':>16} "
          f"{'first ms (hold)':>16} {'cost ms':>8} {'total ms':>9} outcome")
    for strategy, r in rows.items():
        cost = r["policy"]["first_ms"] - r["none"]["first_ms"]
        r["first_token_cost_ms"] = cost
        print(f"{strategy:14} {r['hold_chars']:>5} {r['reply_chars']:>6} "
              f"{r['none']['first_ms']:>16} {r['policy']['first_ms']:>16} {cost:>8} "
              f"{r['policy']['total_ms']:>9} {','.join(r['policy']['outcomes'])}")
    out = Path(__file__).parent / "results" / "stream_latency.json"
    out.write_text(json.dumps({"chars_per_s": args.chars_per_s, "rows": rows}, indent=2) + "\n",
                   "utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
