"""Two or more local assessors decide the same validation rows; per checked set, how many
rows each gets right and, against the first, how many it fixes and how many it breaks.

    .venv/bin/python benchmarks/paired_decisions.py --data runs/data-r4 \
        --assessor "local fast=off" --assessor local --assessor "local fast_sure=0.7"

Why (#18): the validation checks' smallest sets have 23 to 31 rows, so one row is three
or four points, and any change to the encoder or the heads moves a few rows either way.
A check that falls by one row says little; rows broken against rows fixed, summed over
every check, says whether a change is weaker or only different. The p-value is the
two-sided sign test on the changed rows (fixed against broken, equal odds under "only
different"). Validation split only: nothing here reads a test set.

Each `--assessor` is an assessor spec, then settings of the local assessor as key=value:
`first=off` (the first stage off: the encoder reads every text), `fast=off` (no int8
encoder: the heads' own encoder reads every text), `fast_sure=X` (below this sure, the
int8 reading is read again), `r0_shift=X` (R0's probability times e^X in the heads'
reading: a cheaper model traced along its harmful/benign trade, to see whether any point
of it matches the reference on every check; with `first=off`, since a text the first stage
settles never reaches the heads). Prints a table, writes JSON (default:
benchmarks/results/paired_decisions.json).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from _report import report

from oyster.assess.cli import _load_for_eval
from oyster.assess.evaluate import BENIGN_OK, HARMFUL_OK, MISINFORMED_OK, conversation
from oyster.engine import Engine

OK = {"harmful": HARMFUL_OK, "benign": BENIGN_OK, "misinformed": MISINFORMED_OK}


def sign_test(fixed: int, broken: int) -> float:
    """Two-sided p-value of `fixed` against `broken` under equal odds."""
    n, k = fixed + broken, min(fixed, broken)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def shift_r0(heads: Any, shift: float) -> None:
    """Move the heads' level reading toward R0 (`shift` > 0) or away from it: R0's
    probability times e^shift, renormalised. Tracing a model's checks over the shift shows
    the trade it can make between harmful and benign rows, not the one point its
    calibration happens to sit on."""
    predict = heads.predict
    factor = np.array([math.exp(shift), 1.0, 1.0], np.float32)

    def shifted(X: np.ndarray) -> dict[str, np.ndarray]:
        out = predict(X)
        level = out["level"] * factor
        return {**out, "level": level / level.sum(axis=1, keepdims=True)}

    heads.predict = shifted


def decisions(data: Path, described: str) -> dict[str, list[bool]]:
    """Per checked validation set, whether each row's strategy is one its check accepts."""
    spec, *settings = described.split()
    policy, assessor, sets = _load_for_eval(data, spec, "valid", False, 0)
    for setting in settings:
        key, _, value = setting.partition("=")
        if key in ("first", "fast") and value in ("on", "off"):
            setattr(assessor, "first_stage" if key == "first" else "fast_encoder", value == "on")
        elif key == "fast_sure":
            assessor.fast_sure = float(value)
        elif key == "r0_shift":
            shift_r0(assessor.heads, float(value))
        else:
            raise SystemExit(f"unknown assessor setting {setting!r} (first=on|off, "
                             "fast=on|off, fast_sure=X, r0_shift=X)")
    engine = Engine(policy, assessor)
    out: dict[str, list[bool]] = {}
    for s in sets:
        if s.check not in OK:
            continue
        done = assessor.assess_many([conversation(e) for e in s.examples])
        out[s.name] = [engine.decide_assessed(a).strategy in OK[s.check] for a in done]
    print(f"{described}: texts read by {dict(assessor.reads)}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/build"))
    ap.add_argument("--assessor", action="append", required=True,
                    help="'SPEC [key=value ...]' (twice or more; the first is the reference)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                    "paired_decisions.json")
    args = ap.parse_args()
    if len(args.assessor) < 2:
        ap.error("give --assessor at least twice")
    runs = [decisions(args.data, spec) for spec in args.assessor]
    ref = runs[0]
    rows: list[dict[str, Any]] = []
    totals = [[0, 0] for _ in runs]
    for name, base in ref.items():
        row: dict[str, Any] = {"set": name, "n": len(base), "a0_ok": sum(base)}
        for i, run in enumerate(runs[1:], start=1):
            fixed = sum(b and not a for a, b in zip(base, run[name], strict=True))
            broken = sum(a and not b for a, b in zip(base, run[name], strict=True))
            totals[i][0] += fixed
            totals[i][1] += broken
            row[f"a{i}_ok"] = sum(run[name])
            row[f"a{i}_fixed/broken"] = f"{fixed}/{broken}"
        rows.append(row)
    total: dict[str, Any] = {"set": "all checked sets", "n": sum(len(v) for v in ref.values()),
                             "a0_ok": sum(sum(v) for v in ref.values())}
    for i, run in enumerate(runs[1:], start=1):
        total[f"a{i}_ok"] = sum(sum(v) for v in run.values())
        total[f"a{i}_fixed/broken"] = f"{totals[i][0]}/{totals[i][1]} (p {sign_test(*totals[i]):.2f})"
    rows.append(total)
    report("validation decisions, paired (" + ", ".join(
        f"a{i} = {s}" for i, s in enumerate(args.assessor)) + ")", rows, args.out,
        assessors=args.assessor, load_avg=round(os.getloadavg()[0], 2))


if __name__ == "__main__":
    main()
