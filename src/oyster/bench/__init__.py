"""Benchmarks (docs/benchmarks.md): a benchmark is a dataset, a target (the bare backend, or the
backend behind the engine) and judges. Runs are durable JSONL; reports are one HTML file.

    oyster bench strata-sword --data ../shared/data/strata_sword --engine --bare --out runs/ss
    oyster bench constructive --engine --bare --out runs/cs      # our starter set by default
    oyster bench over-refusal --engine --out runs/or
    oyster report runs/ss runs/cs --out report.html
"""

from oyster.bench.datasets import BenchItem, load_constructive, load_prompts, load_strata_sword
from oyster.bench.metrics import BETAS, RunSummary, run_summary
from oyster.bench.records import ResultRecord, RunDir, RunMeta
from oyster.bench.runner import BENCHMARKS, JudgePanel, run, summarize

__all__ = ["BENCHMARKS", "BETAS", "BenchItem", "JudgePanel", "ResultRecord", "RunDir", "RunMeta",
           "RunSummary", "load_constructive", "load_prompts", "load_strata_sword", "run",
           "run_summary", "summarize"]
