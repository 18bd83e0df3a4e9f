"""`oyster decide` on N lines: one process vs Ray with 1 and 2 workers, in one run.

The input is our own assessor training prompts (`src/oyster/assess/data/written*.yaml`,
English and Chinese), cycled to N lines with distinct ids, plus one malformed line. Each run
is `oyster decide FILE --out OUT` as a subprocess (wall time includes process start, model
loading and, with --ray, starting a local Ray instance); the Ray outputs must equal the plain
output byte for byte. Every run gets OMP_NUM_THREADS=1 (one BLAS thread per process), as Ray
gives its one-CPU workers: on a busy machine BLAS threads that spin while waiting for a core
cost far more than they save, and the comparison would measure that instead.

    python benchmarks/decide_ray.py --lines 5000
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import yaml
from proxy_load import load_average, machine


def _prompts() -> list[str]:
    data = resources.files("oyster.assess").joinpath("data")
    texts: list[str] = []
    for entry in sorted(data.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("written") and entry.name.endswith(".yaml"):
            for section in yaml.safe_load(entry.read_text("utf-8"))["sections"]:
                for item in section.get("items", []):
                    texts.append(item if isinstance(item, str) else item["text"])
    return texts


def _write_cases(path: Path, n: int) -> None:
    texts = _prompts()
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            if i == n // 2:
                f.write("{this line is not JSON\n")
            f.write(json.dumps({"id": f"case-{i}", "prompt": texts[i % len(texts)]},
                               ensure_ascii=False) + "\n")


def _decide(cases: Path, out: Path, assessor: str, extra: list[str]) -> float:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "oyster.cli", "decide", str(cases),
                           "--assessor", assessor, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=3600,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"oyster decide {' '.join(extra)} failed: {done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--assessor", default="default")
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/decide_ray.json"))
    args = parser.parse_args()
    if not 0 < args.lines <= 1_000_000:
        raise SystemExit("--lines must be in (0, 1000000]")
    load_before = load_average()
    runs = []
    with tempfile.TemporaryDirectory(prefix="oyster-decide-ray-") as tmp:
        work = Path(tmp)
        cases = work / "cases.jsonl"
        _write_cases(cases, args.lines)
        plain = work / "plain.jsonl"
        variants = [("one process", plain, []),
                    *((f"ray, {w} worker{'s' if w > 1 else ''}", work / f"ray{w}.jsonl",
                       ["--ray", "local", "--ray-workers", str(w), "--chunk", str(args.chunk)])
                      for w in (1, 2))]
        for name, out, extra in variants:
            seconds = _decide(cases, out, args.assessor, extra)
            runs.append({"run": name, "seconds": round(seconds, 2),
                         "lines_per_s": round((args.lines + 1) / seconds, 1),
                         "identical_to_plain": filecmp.cmp(plain, out, shallow=False),
                         "load_average_1m_after": load_average()})
    report = {"benchmark": "decide_ray", "lines": args.lines + 1, "assessor": args.assessor,
              "chunk": args.chunk, "machine": machine(load_before),
              "command": " ".join(["python", "benchmarks/decide_ray.py", *sys.argv[1:]]),
              "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"oyster decide on {args.lines + 1} lines ({args.assessor} assessor)")
    for col in ("run", "seconds", "lines/s", "byte-identical", "load avg after"):
        table.add_column(col, justify="right")
    for r in runs:
        table.add_row(r["run"], str(r["seconds"]), str(r["lines_per_s"]),
                      "yes" if r["identical_to_plain"] else "NO",
                      str(r["load_average_1m_after"]))
    Console(width=120).print(table)
    print(f"load average (1 min) before {load_before}; wrote {args.out}")
    if not all(r["identical_to_plain"] for r in runs):
        raise SystemExit("a Ray run differs from the plain run")


if __name__ == "__main__":
    main()
