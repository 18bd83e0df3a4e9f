"""The cascade against the encoder alone on every test set: does the first stage hide a
weaker model behind a faster one (#18)?

    .venv/bin/python benchmarks/cascade_vs_encoder.py [--out FILE]

Every case of `oyster assess report` (Strata-Sword L1-2, the starter sets,
`bench/data/testsets/`) is decided twice by the packaged assessor, with its first stage
(as shipped) and without it (the encoder reads every text). Per set: how many cases the
stage settles, how many decisions each gets right (a strategy the case accepts), the
cases the cascade fixes and breaks against the encoder alone (sign test over all sets),
and `helped harmful`: harmful cases (refuse|guide expected) the encoder declines and the
cascade helps (answer, answer_safely), the error a settled reading must never add. Test
sets: read to report, never to choose (the thresholds are chosen on the validation split,
`oyster assess first-stage`). Prints a table, writes JSON (default:
benchmarks/results/cascade_vs_encoder.json).
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path
from typing import Any

from _report import report
from paired_decisions import sign_test

from oyster.assess.local import SETTLED_NOTE
from oyster.bench.decision_report import HARMFUL, HELPFUL, Case, load_cases
from oyster.engine import Engine


def decide(engine: Engine, cases: list[Case], batch: int = 32) -> list[tuple[str, bool]]:
    """(strategy, settled by the first stage) per case."""
    out = []
    for start in range(0, len(cases), batch):
        chunk = cases[start:start + batch]
        for d in engine.decide_many([c.messages for c in chunk]):
            out.append((d.strategy, any(n.startswith(SETTLED_NOTE) for n in d.assessment.notes)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                    "cascade_vs_encoder.json")
    args = ap.parse_args()
    cases = load_cases()
    engine = Engine(assessor="default")
    assessor: Any = engine.assessor
    stage = assessor.first_stage
    if stage is None:
        raise SystemExit("the packaged assessor has no first stage")
    cascade = decide(engine, cases)
    assessor.first_stage = False
    alone = decide(engine, cases)
    per_set: dict[str, Counter[str]] = {}
    for case, (s_cas, settled), (s_enc, _) in sorted(
            zip(cases, cascade, alone, strict=True), key=lambda x: x[0].set):
        c = per_set.setdefault(case.set, Counter())
        ok_cas, ok_enc = s_cas in case.expected, s_enc in case.expected
        c["n"] += 1
        c["settled"] += settled
        c["cascade ok"] += ok_cas
        c["encoder ok"] += ok_enc
        c["fixed"] += ok_cas and not ok_enc
        c["broken"] += ok_enc and not ok_cas
        c["helped harmful"] += (case.expected == HARMFUL and s_enc in HARMFUL
                                and s_cas in HELPFUL)
    cols = ("n", "settled", "cascade ok", "encoder ok", "fixed", "broken", "helped harmful")
    per_set["all"] = sum(per_set.values(), Counter())
    rows = [{"set": name, **{k: c[k] for k in cols},
             "sign test p": round(sign_test(c["fixed"], c["broken"]), 3)}
            for name, c in per_set.items()]
    report("test sets: the cascade against the encoder alone", rows, args.out,
           settle_min=stage.settle_min, settle_r2_max=stage.settle_r2_max,
           load_avg=round(os.getloadavg()[0], 2))


if __name__ == "__main__":
    main()
