"""Lingo-BP (docs/lingobp.md): improve a query's reasoning chain from the judges' feedback,
one minimal strategy edit per round, and turn the rounds into training data.

    from oyster.lingobp import LingoBP, RunSpec, build
    lingo = build(RunSpec(backend="embedded", judge="local", rounds=3))
    result = lingo.optimize("my landlord kept my deposit, what can I do?")
    result.best.chain, result.best.reply, result.preference

    # command line
    oyster lingobp run --data queries.jsonl --backend embedded --judge local --out runs/lbp
    oyster lingobp export runs/lbp --format sft --out sft.jsonl

The minimal-edit rule is enforced by `plan_edit`/`apply_edit`, whatever the editor proposes.
"""

from oyster.lingobp.edit import SetEdit, apply_edit, plan_edit, same_item, similarity
from oyster.lingobp.editors import (
    EditProposal,
    EditRequest,
    Feedback,
    LLMEditor,
    Mode,
    RuleEditor,
    StrategyEditor,
)
from oyster.lingobp.export import ExportSummary, export, preference_rows, sft_rows
from oyster.lingobp.optimizer import LingoBP
from oyster.lingobp.propagate import ChainPropagator, LLMPropagator, RulePropagator, relabel
from oyster.lingobp.queries import Query, load_queries
from oyster.lingobp.records import QueryResult, RoundRecord, RunStore
from oyster.lingobp.report import run_numbers
from oyster.lingobp.run import RunReport, RunSpec, arun_queries, build, run_queries

__all__ = [
    "ChainPropagator",
    "EditProposal",
    "EditRequest",
    "ExportSummary",
    "Feedback",
    "LLMEditor",
    "LLMPropagator",
    "LingoBP",
    "Mode",
    "Query",
    "QueryResult",
    "RoundRecord",
    "RuleEditor",
    "RulePropagator",
    "RunReport",
    "RunSpec",
    "RunStore",
    "SetEdit",
    "StrategyEditor",
    "apply_edit",
    "arun_queries",
    "build",
    "export",
    "load_queries",
    "plan_edit",
    "preference_rows",
    "relabel",
    "run_numbers",
    "run_queries",
    "same_item",
    "sft_rows",
    "similarity",
]
