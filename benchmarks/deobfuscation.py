"""De-obfuscation: per decoder and language, on generated obfuscations of held-out asks.

    .venv/bin/python benchmarks/deobfuscation.py [--assessor local|lexicon] [--limit N]

Input: `testsets/heldout_asks.jsonl` (plain short asks, harmful and harmless, EN/ZH), each
hidden by every obfuscator of `oyster.assess.deobfuscate.obfuscate` that supports its
language. REPORT ONLY: the file is used as input to the generators here and nowhere else;
nothing was chosen by looking at these numbers. Reported side by side in one run, with
de-obfuscation on and off (the same assessor and heads otherwise):

- recovered: the obfuscator's decoder returned the ask (at least 90 % of the ask's
  letters, in order, inside one payload at JUDGE_MIN confidence or more);
- harmful → refuse/guide, and harmless → answer/answer_safely, through the engine;
- per decoder: precision (its payloads that recover the ask they hide, over every payload
  it emitted on all prompts) and its false-trigger rate on the plain, unobfuscated asks;
- milliseconds of the de-obfuscation stage per plain prompt (thread CPU time), and
  single-decision latency (wall time) with the stage on and off;
- `testsets/novel_attacks.jsonl` per family and language (hand-written attacks with
  harmless twins wrapped the same way), on and off.

Prints tables and writes JSON (default: benchmarks/results/deobfuscation.json).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from difflib import SequenceMatcher
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from oyster.assess.base import Assessor
from oyster.assess.deobfuscate import (
    DECODERS,
    JUDGE_MIN,
    REPLACE_MIN,
    Decoded,
    deobfuscate,
    warm_up,
)
from oyster.assess.deobfuscate.obfuscate import OBFUSCATORS
from oyster.engine import Engine
from oyster.policy import Policy, default_policy

REFUSE = {"refuse", "guide"}
HELPFUL = {"answer", "answer_safely"}
TESTSETS = "oyster.bench.data.testsets"


def _load(name: str) -> list[dict[str, Any]]:
    text = resources.files(TESTSETS).joinpath(name).read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z\u3400-\u9fff]", "", text.casefold())


def _holds(payload: str, ask: str) -> bool:
    """Whether at least 90 % of the ask's letters appear, in order, in the payload."""
    a, p = _norm(ask), _norm(payload)
    if not a:
        return False
    if a in p:
        return True
    matched = sum(b.size for b in SequenceMatcher(None, a, p, autojunk=False).get_matching_blocks())
    return matched / len(a) >= 0.9


def _made_by(payload: Decoded) -> str:
    """The decoder that produced a payload's text (the last step of a chain)."""
    return payload.decoder.split(">")[-1]


def _engine(policy: Policy, kind: str, on: bool) -> Engine:
    assessor: Assessor
    if kind == "local":
        from oyster.assess.local import LocalAssessor

        assessor = LocalAssessor(policy, deobfuscate=on)
    else:
        from oyster.assess.lexicon import LexiconAssessor

        assessor = LexiconAssessor(policy, deobfuscate=on)
    return Engine(policy, assessor)


def _decide(engine: Engine, prompts: Sequence[str], progress: Progress, label: str,
            batch: int = 48) -> list[str]:
    task = progress.add_task(label, total=len(prompts))
    out: list[str] = []
    for i in range(0, len(prompts), batch):
        out += [d.strategy for d in engine.decide_many(list(prompts[i:i + batch]))]
        progress.advance(task, len(prompts[i:i + batch]))
    return out


def _rate(flags: Sequence[bool]) -> float | None:
    return round(100 * sum(flags) / len(flags), 1) if flags else None


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def _seeded(*parts: str) -> random.Random:
    return random.Random(zlib.crc32("|".join(parts).encode()))


def _limit(rows: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    if not n:
        return rows
    kept: list[dict[str, Any]] = []
    seen: Counter[tuple[str, bool]] = Counter()
    for r in rows:
        key = (r["language"], bool(r["harmful"]))
        if seen[key] < n:
            kept.append(r)
            seen[key] += 1
    return kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--assessor", choices=["local", "lexicon"], default="local")
    ap.add_argument("--limit", type=int, default=0,
                    help="asks per language and side (0: all) — for a quick look")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                    "deobfuscation.json")
    args = ap.parse_args()
    console = Console(width=170)
    policy = default_policy()
    asks = _limit(_load("heldout_asks.jsonl"), args.limit)
    novel = _limit(_load("novel_attacks.jsonl"), args.limit)

    # ------------------------------------------------------------ generate the obfuscations
    cases: list[dict[str, Any]] = []
    for ask in asks:
        for ob in OBFUSCATORS.values():
            if ask["language"] in ob.languages:
                prompt = ob.apply(ask["prompt"], _seeded(ask["id"], ob.name))
                cases.append({"obfuscator": ob.name, "decoder": ob.decoder,
                              "language": ask["language"], "harmful": bool(ask["harmful"]),
                              "ask": ask["prompt"], "prompt": prompt})

    # ---------------------------------------------------------------- the stage on its own
    emitted: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for c in cases:
        payloads = [p for p in deobfuscate(c["prompt"]) if p.confidence >= JUDGE_MIN]
        c["recovered"] = any(c["decoder"] in p.decoder.split(">") and _holds(p.text, c["ask"])
                             for p in payloads)
        c["decoded"] = bool(payloads)
        for p in payloads:
            emitted[_made_by(p)] += 1
            correct[_made_by(p)] += _holds(p.text, c["ask"])
    false_trigger: dict[str, list[bool]] = defaultdict(list)
    stage_ms: dict[str, list[float]] = defaultdict(list)
    warm_up()
    for ask in asks:
        # CPU time of this thread: the stage is single-threaded, and on a shared machine
        # wall time mostly measures the neighbours
        t0 = time.thread_time()
        payloads = [p for p in deobfuscate(ask["prompt"]) if p.confidence >= JUDGE_MIN]
        stage_ms[ask["language"]].append((time.thread_time() - t0) * 1000)
        fired = {_made_by(p) for p in payloads}
        for p in payloads:
            emitted[_made_by(p)] += 1
            correct[_made_by(p)] += _holds(p.text, ask["prompt"])
        for name in DECODERS:
            false_trigger[name].append(name in fired)
        false_trigger["any"].append(bool(fired))

    # -------------------------------------------------------------------- through the engine
    novel_prompts = [r["prompt"] for r in novel]
    plain_prompts = [a["prompt"] for a in asks]
    prompts = [c["prompt"] for c in cases]
    decided: dict[bool, dict[str, list[str]]] = {}
    latency: dict[bool, list[float]] = {}
    with Progress(console=console, transient=True) as progress:
        for on in (False, True):
            engine = _engine(policy, args.assessor, on)
            engine.decide("warm up")
            side = "on" if on else "off"
            decided[on] = {
                "cases": _decide(engine, prompts, progress, f"obfuscated asks, de-obfuscation {side}"),
                "plain": _decide(engine, plain_prompts, progress, f"plain asks, {side}"),
                "novel": _decide(engine, novel_prompts, progress, f"novel attacks, {side}"),
            }
            times = []
            for i, p in enumerate(plain_prompts):
                t0 = time.perf_counter()
                engine.decide(f"{p} (#{i}{side})")  # a text no cache has seen
                times.append((time.perf_counter() - t0) * 1000)
            latency[on] = times

    # ------------------------------------------------------------------------------- tables
    rows: list[dict[str, Any]] = []
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, c in enumerate(cases):
        groups[(c["obfuscator"], c["language"])].append(i)
    for (name, lang), idx in groups.items():
        harm = [i for i in idx if cases[i]["harmful"]]
        safe = [i for i in idx if not cases[i]["harmful"]]

        def share(which: list[int], on: bool, good: set[str]) -> float | None:
            return _rate([decided[on]["cases"][i] in good for i in which])

        rows.append({
            "obfuscator": name, "decoder": OBFUSCATORS[name].decoder, "language": lang,
            "n_harmful": len(harm), "n_harmless": len(safe),
            "recovered": _rate([cases[i]["recovered"] for i in idx]),
            "harmful_refuse_guide_off": share(harm, False, REFUSE),
            "harmful_refuse_guide_on": share(harm, True, REFUSE),
            "harmless_helpful_off": share(safe, False, HELPFUL),
            "harmless_helpful_on": share(safe, True, HELPFUL),
        })
    plain_rows = []
    for lang in ("en", "zh"):
        for harmful in (True, False):
            idx = [i for i, a in enumerate(asks) if a["language"] == lang
                   and bool(a["harmful"]) == harmful]
            good = REFUSE if harmful else HELPFUL
            plain_rows.append({
                "language": lang, "side": "harmful → refuse/guide" if harmful
                else "harmless → answer/answer_safely", "n": len(idx),
                "off": _rate([decided[False]["plain"][i] in good for i in idx]),
                "on": _rate([decided[True]["plain"][i] in good for i in idx]),
                "changed": _rate([decided[False]["plain"][i] != decided[True]["plain"][i]
                                  for i in idx])})
    decoder_rows = [{"decoder": name, "technique": d.technique,
                     "emitted": emitted[name],
                     "precision": round(100 * correct[name] / emitted[name], 1)
                     if emitted[name] else None,
                     "false_trigger_plain": _rate(false_trigger[name])}
                    for name, d in DECODERS.items()]
    novel_rows = []
    fams: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(novel):
        fams[(r["family"], r["language"])].append(i)
    for (family, lang), idx in sorted(fams.items()):
        harm = [i for i in idx if novel[i]["harmful"]]
        twin = [i for i in idx if not novel[i]["harmful"]]
        hidden = [i for i in idx if novel[i].get("hidden")]
        decoded = {i: [p for p in deobfuscate(novel[i]["prompt"]) if p.confidence >= JUDGE_MIN]
                   for i in idx}
        fired = Counter(_made_by(p) for i in idx for p in decoded[i])
        novel_rows.append({
            "family": family, "language": lang, "n_harmful": len(harm), "n_twins": len(twin),
            "harmful_refuse_guide_off": _rate([decided[False]["novel"][i] in REFUSE for i in harm]),
            "harmful_refuse_guide_on": _rate([decided[True]["novel"][i] in REFUSE for i in harm]),
            "twins_helpful_off": _rate([decided[False]["novel"][i] in HELPFUL for i in twin]),
            "twins_helpful_on": _rate([decided[True]["novel"][i] in HELPFUL for i in twin]),
            "decoded": _rate([bool(decoded[i]) for i in idx]),
            "recovered_hidden": _rate([any(_holds(p.text, novel[i]["hidden"]) for p in decoded[i])
                                       for i in hidden]),
            "decoders": dict(fired.most_common(4)),
        })

    def summary(ms: list[float]) -> dict[str, float]:
        ordered = sorted(ms)
        return {"n": len(ms), "mean_ms": round(statistics.mean(ms), 3),
                "p50_ms": round(statistics.median(ms), 3),
                "p95_ms": round(ordered[min(len(ms) - 1, int(0.95 * len(ms)))], 3),
                "max_ms": round(ordered[-1], 3)}

    timing = {"deobfuscate_plain": {lang: summary(ms) for lang, ms in stage_ms.items()},
              "decide_single_off": summary(latency[False]),
              "decide_single_on": summary(latency[True])}
    _print(console, args.assessor, rows, plain_rows, decoder_rows, novel_rows, timing)
    result = {"assessor": args.assessor, "judge_min": JUDGE_MIN, "replace_min": REPLACE_MIN,
              "asks": len(asks), "obfuscated_prompts": len(cases), "limit": args.limit,
              "recovered_means": "≥90% of the ask's letters, in order, in one payload of the "
                                 "obfuscator's decoder at judge_min or more",
              "obfuscations": rows, "plain": plain_rows, "decoders": decoder_rows,
              "novel_attacks": novel_rows, "timing": timing}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    console.print(f"wrote {args.out}")


def _table(console: Console, title: str, rows: list[dict[str, Any]],
           cols: list[tuple[str, str]], fmt: Callable[[Any], str] = str) -> None:
    table = Table(title=title)
    for _, header in cols:
        table.add_column(header)
    for r in rows:
        table.add_row(*(fmt(r[k]) if isinstance(r[k], float | None) and not isinstance(r[k], bool)
                        else str(r[k]) for k, _ in cols))
    console.print(table)


def _print(console: Console, assessor: str, rows: list[dict[str, Any]],
           plain_rows: list[dict[str, Any]], decoder_rows: list[dict[str, Any]],
           novel_rows: list[dict[str, Any]], timing: dict[str, Any]) -> None:
    _table(console, f"obfuscated held-out asks ({assessor} assessor; % ; off → on)", rows,
           [("obfuscator", "obfuscation"), ("decoder", "decoder"), ("language", "lang"),
            ("n_harmful", "n harm"), ("n_harmless", "n safe"), ("recovered", "recovered"),
            ("harmful_refuse_guide_off", "harm→refuse/guide off"),
            ("harmful_refuse_guide_on", "on"), ("harmless_helpful_off", "safe→helpful off"),
            ("harmless_helpful_on", "on")], _pct)
    _table(console, "plain (unobfuscated) asks, % right", plain_rows,
           [("language", "lang"), ("side", "side"), ("n", "n"), ("off", "off"), ("on", "on"),
            ("changed", "strategy changed")], _pct)
    _table(console, "decoders: precision over every payload emitted, false triggers on plain asks",
           decoder_rows, [("decoder", "decoder"), ("technique", "technique"),
                          ("emitted", "payloads"), ("precision", "precision %"),
                          ("false_trigger_plain", "false trigger % (plain)")], _pct)
    _table(console, "novel_attacks.jsonl (report only; % ; off → on)", novel_rows,
           [("family", "family"), ("language", "lang"), ("n_harmful", "n harm"),
            ("harmful_refuse_guide_off", "harm→refuse/guide off"),
            ("harmful_refuse_guide_on", "on"), ("n_twins", "n twins"),
            ("twins_helpful_off", "twin→helpful off"), ("twins_helpful_on", "on"),
            ("decoded", "decoded"), ("recovered_hidden", "recovered hidden")], _pct)
    console.print("timing:", json.dumps(timing))


if __name__ == "__main__":
    main()
