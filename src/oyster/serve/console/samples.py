"""Synthetic audit rows: a plausible day-to-day mix of decisions, for the console's tests and
`benchmarks/console_audit.py`. Seeded, so a run is repeatable. Not used by the server."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from oyster.assess.base import CategoryScore
from oyster.serve.audit import AuditLog, AuditRecord, Endpoint, Outcome
from oyster.taxonomy.policy import NONE_CATEGORY, Policy
from oyster.types import STRATEGIES, USER_TYPES, Language, Level, Message, Strategy

_BY_LEVEL: dict[Level, tuple[list[Strategy], list[float]]] = {
    "R0": (["answer", "answer_safely"], [0.9, 0.1]),
    "R1": (["answer_safely", "correct", "guide", "refuse"], [0.4, 0.2, 0.3, 0.1]),
    "R2": (["guide", "refuse"], [0.3, 0.7]),
}
_OUTCOMES: tuple[list[Outcome], list[float]] = (
    ["passed", "regenerated", "repaired", "fallback", "upstream_error"],
    [0.86, 0.07, 0.02, 0.04, 0.01])


def synthetic_records(policy: Policy, n: int, *, start: float, days: float = 7.0,
                      seed: int = 0, keys: tuple[str, ...] = ("support-bot", "clinic-app",
                                                                 "batch-eval"),
                      with_text: bool = False) -> Iterator[AuditRecord]:
    """`n` rows spread over `days` from `start` (unix seconds), in time order."""
    rng = random.Random(seed)
    categories = [c for c in policy.taxonomy.categories if c.id != NONE_CATEGORY]
    step = days * 86400 / max(n, 1)
    for i in range(n):
        level: Level = rng.choices(("R0", "R1", "R2"), (0.6, 0.3, 0.1))[0]
        strategy = rng.choices(*_BY_LEVEL[level])[0]
        picked = [] if level == "R0" else rng.sample(categories, rng.choice((1, 1, 2)))
        cats = [CategoryScore(id=c.id, name=c.name_en, score=round(rng.uniform(0.4, 0.99), 3))
                for c in picked]
        attacks = (sorted(rng.sample(["role_play", "instruction_override", "encoding",
                                      "payload_split"], rng.choice((1, 2))))
                   if level == "R2" and rng.random() < 0.8 else [])
        weights = [rng.random() for _ in USER_TYPES]
        total = sum(weights)
        utilities = {a: round(rng.uniform(-1.5, 1.0), 3) for a in STRATEGIES}
        utilities[strategy] = round(max(utilities.values()) + rng.uniform(0.01, 0.3), 3)
        outcome: Outcome = rng.choices(*_OUTCOMES)[0]
        endpoint: Endpoint = "chat"
        if rng.random() < 0.15:
            outcome, endpoint = "decided", "decide"
        decide_ms = rng.lognormvariate(3.0, 0.5)
        upstream_ms = None if endpoint == "decide" else rng.lognormvariate(6.5, 0.6)
        language: Language = "zh" if rng.random() < 0.3 else "en"
        text = f"synthetic message {i} ({language}, {level})"
        yield AuditRecord(
            id=f"chatcmpl-synth{seed:02d}{i:08d}", time=start + i * step + rng.random() * step,
            key_id=rng.choice(keys) if keys else None, endpoint=endpoint,
            model="fake" if endpoint == "chat" else None, policy=policy.label, level=level,
            categories=cats, attacks=attacks,
            user_type={t: round(w / total, 4) for t, w in zip(USER_TYPES, weights, strict=True)},
            strategy=strategy, utilities=utilities, language=language, outcome=outcome,
            verified=None if endpoint == "decide" else outcome != "fallback",
            problems=["hazard_leak"] if outcome in ("regenerated", "fallback") else [],
            fallback_used=outcome == "fallback", status=200,
            latency_ms=round(decide_ms + (upstream_ms or 0.0), 3), decide_ms=round(decide_ms, 3),
            upstream_ms=round(upstream_ms, 3) if upstream_ms is not None else None,
            messages=[Message(role="user", content=text)] if with_text else None,
            reply="synthetic reply" if with_text and endpoint == "chat" else None)


def write_synthetic_log(path: str | Path, policy: Policy, n: int, *, start: float,
                        days: float = 7.0, seed: int = 0, with_text: bool = False) -> Path:
    """Append `n` synthetic rows to the audit log at `path` through the proxy's own writer."""
    with AuditLog(path, policy.audit) as log:
        pending = [log.submit(r) for r in synthetic_records(policy, n, start=start, days=days,
                                                            seed=seed, with_text=with_text)]
        for done in pending:
            done.result()
    return Path(path)
