"""The data card of a Lingo-BP run: what its training data is made of.

Counts, per language, level, kind (the seed set's situation label) and strategy (of the
chosen reply; `-`: no reply could be chosen), the run's finished queries, the SFT rows and
the preference pairs that `export` writes with the same settings; how many chosen replies
the model wrote and how many the policy (scaffold, correction, refusal) or both; where the
rejected replies came from (a failed attempt, a round, the bare model) and why; and why
queries were left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from oyster.errors import InputError
from oyster.lingobp.bare import read_bare
from oyster.lingobp.export import DEFAULT_MAX_PAIRS, chosen_round, preference_rows, sft_rows
from oyster.lingobp.records import RunStore

DIMENSIONS = ("language", "level", "kind", "strategy")
_NONE = "-"


def _count(values: Iterable[Any]) -> dict[str, int]:
    return dict(sorted(Counter(_NONE if v is None else str(v) for v in values).items()))


class Slice(BaseModel):
    """Queries, SFT rows and preference pairs for one value of one dimension."""

    model_config = ConfigDict(frozen=True)

    queries: int
    sft_rows: int
    preference_pairs: int
    pair_queries: int = Field(description="queries with at least one pair")


class DataCard(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_dir: str
    backend: str
    judge: str
    rounds: int
    min_safety: float
    max_pairs: int
    max_refusal_share: float | None
    queries: int
    sft_rows: int
    preference_pairs: int
    pair_queries: int
    bare_replies: int = Field(description="queries with a bare reply (`oyster lingobp bare`)")
    by: dict[str, dict[str, Slice]] = Field(description="dimension -> value -> counts")
    chosen_source: dict[str, int] = Field(description="SFT rows by who wrote the chosen reply")
    chosen_outcome: dict[str, int]
    rejected_origin: dict[str, int]
    rejected_reason: dict[str, int]
    rejected_problems: dict[str, int] = Field(description="verification problems of the "
                                                          "rejected replies that failed it")
    left_out: dict[str, dict[str, int]] = Field(description="format -> reason -> queries")


def data_card(run_dir: str | Path, min_safety: float = 1.0,
              max_pairs: int = DEFAULT_MAX_PAIRS,
              max_refusal_share: float | None = None) -> DataCard:
    store = RunStore(run_dir)
    manifest = store.manifest()
    results = store.results()
    if not results:
        raise InputError(f"{run_dir}: no finished queries yet")
    bare = read_bare(run_dir)
    sft, sft_skipped = sft_rows(results, None, min_safety, max_refusal_share)
    pairs, pair_skipped = preference_rows(results, None, min_safety, max_pairs, bare)
    # by the chosen round itself: a refusal capped out of the SFT rows still has one
    chosen = {r.id: chosen_round(r, min_safety)[0] for r in results}
    chosen_strategy = {id: c.reply_strategy for id, c in chosen.items() if c is not None}

    def labels(id: str, query: Mapping[str, Any]) -> dict[str, Any]:
        return {**{d: query.get(d) for d in DIMENSIONS[:3]}, "strategy": chosen_strategy.get(id)}

    queries = {r.id: labels(r.id, r.query.model_dump()) for r in results}
    by: dict[str, dict[str, Slice]] = {}
    for dim in DIMENSIONS:
        def value(id: str, dim: str = dim) -> str:
            v = queries[id][dim]
            return _NONE if v is None else str(v)

        q = Counter(value(id) for id in queries)
        s = Counter(value(row["meta"]["id"]) for row in sft)
        p = Counter(value(row["meta"]["id"]) for row in pairs)
        pq = Counter(value(id) for id in {row["meta"]["id"] for row in pairs})
        by[dim] = {k: Slice(queries=q[k], sft_rows=s[k], preference_pairs=p[k],
                            pair_queries=pq[k]) for k in sorted(q)}
    rejected = [row["meta"]["rejected"] for row in pairs]
    return DataCard(
        run_dir=str(run_dir), backend=manifest.backend, judge=manifest.judge,
        rounds=manifest.rounds, min_safety=min_safety, max_pairs=max_pairs,
        max_refusal_share=max_refusal_share,
        queries=len(results), sft_rows=len(sft), preference_pairs=len(pairs),
        pair_queries=len({row["meta"]["id"] for row in pairs}), bare_replies=len(bare),
        by=by, chosen_source=_count(row["meta"]["chosen_source"] for row in sft),
        chosen_outcome=_count(row["meta"]["chosen_outcome"] for row in sft),
        rejected_origin=_count(r["origin"] for r in rejected),
        rejected_reason=_count(r["reason"] for r in rejected),
        rejected_problems=_count(p for r in rejected for p in r["problems"]),
        left_out={"sft": dict(sft_skipped), "preference": dict(pair_skipped)})


def card_markdown(card: DataCard) -> str:
    """The card as Markdown tables (for a closing note or a model card)."""
    lines = [f"Lingo-BP run `{card.run_dir}` (backend {card.backend}, judges {card.judge}, "
             f"rounds {card.rounds}; min safety {card.min_safety}, at most {card.max_pairs} "
             f"pairs per query, refusals at most {card.max_refusal_share or 'any'} of the SFT "
             f"rows): {card.queries} queries, {card.sft_rows} SFT rows, "
             f"{card.preference_pairs} preference pairs from {card.pair_queries} queries; "
             f"bare replies for {card.bare_replies} queries.", ""]
    for dim, values in card.by.items():
        lines += [f"| {dim} | queries | SFT rows | pairs | queries with pairs |",
                  "|---|---|---|---|---|"]
        lines += [f"| {k} | {s.queries} | {s.sft_rows} | {s.preference_pairs} | "
                  f"{s.pair_queries} |" for k, s in values.items()]
        lines.append("")
    for title, counts in (("chosen reply written by", card.chosen_source),
                          ("chosen reply outcome", card.chosen_outcome),
                          ("rejected reply from", card.rejected_origin),
                          ("rejected because", card.rejected_reason),
                          ("verification problems of rejected replies", card.rejected_problems),
                          *((f"left out of {fmt}", why) for fmt, why in card.left_out.items())):
        lines.append(f"{title}: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
    return "\n".join(lines)
