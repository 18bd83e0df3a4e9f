"""The numbers of a Lingo-BP run: mean judge scores per round, and what the runs ended with.

A query that stopped early (both judges at their maximum, or nothing left to edit) counts in
later rounds with its last round's scores, so every round's mean is over the same queries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from statistics import fmean

from pydantic import BaseModel, ConfigDict, Field

from oyster.lingobp.records import QueryResult, RoundRecord, RoundScores
from oyster.lingobp.settings import settings


class RoundRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    round: str = Field(description="0, 1, ... or 'best'")
    queries: int
    edited: int = Field(description="queries that actually ran this round")
    satisfaction: float | None
    safety: float | None
    constructive: float | None


class RunNumbers(BaseModel):
    model_config = ConfigDict(frozen=True)

    queries: int
    rounds: list[RoundRow]
    stopped: dict[str, int]
    preference_pairs: int
    strategy_changes: int = Field(description="rounds whose edit moved the strategy label")
    level_agreement: float | None = Field(description="share of queries labelled with a level "
                                          "whose round-0 decision has that level")
    clamped_edits: int = Field(description="set edits cut down to one change")


def _mean(scores: Sequence[RoundScores], pick: Callable[[RoundScores], float | None]
          ) -> float | None:
    values = [v for s in scores if (v := pick(s)) is not None]
    return round(fmean(values), 4) if values else None


def _row(label: str, records: Sequence[RoundRecord], edited: int) -> RoundRow:
    scores = [r.scores for r in records]
    return RoundRow(round=label, queries=len(records), edited=edited,
                    satisfaction=_mean(scores, lambda s: s.satisfaction),
                    safety=_mean(scores, lambda s: s.safety),
                    constructive=_mean(scores, lambda s: s.constructive))


def run_numbers(results: Sequence[QueryResult]) -> RunNumbers:
    last = max((r.rounds[-1].round for r in results), default=-1)
    rows = []
    for k in range(last + 1):
        at_k = [res.round_record(min(k, res.rounds[-1].round)) for res in results]
        rows.append(_row(str(k), at_k, sum(1 for res in results if res.rounds[-1].round >= k)))
    if results:
        rows.append(_row("best", [res.round_record(res.best_round) for res in results],
                         len(results)))
    edits = [r.edit for res in results for r in res.rounds if r.edit is not None]
    labelled = [res for res in results if res.query.level is not None]
    return RunNumbers(
        queries=len(results), rounds=rows,
        stopped=dict(Counter(res.stopped for res in results)),
        preference_pairs=sum(1 for res in results if res.preference is not None),
        strategy_changes=sum(1 for e in edits if e.strategy_before != e.strategy_after),
        clamped_edits=sum(int(e.safety.clamped) + int(e.usefulness.clamped) for e in edits),
        level_agreement=round(fmean(res.rounds[0].decision.level == res.query.level
                                    for res in labelled), 4) if labelled else None)


def round_table(numbers: RunNumbers) -> str:
    """A plain-text table (also valid Markdown)."""
    def cell(v: float | None) -> str:
        return "-" if v is None else f"{v:+.3f}"

    beta = settings().score_beta
    lines = [f"| round | queries | edited | satisfaction | safety | C_{beta:g} |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r.round} | {r.queries} | {r.edited} | {cell(r.satisfaction)} | "
              f"{cell(r.safety)} | {cell(r.constructive)} |" for r in numbers.rounds]
    return "\n".join(lines)
