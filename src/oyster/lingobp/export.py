"""Training data from a Lingo-BP run, in chat-format JSONL that TRL reads directly
(and `oyster train sft|orpo` validates):

- `sft`: `{"messages": [the query's messages..., {"role": "assistant", "content": R}]}` with
  the best round's reply;
- `preference`: `{"prompt": [the query's messages...], "chosen": [{"role": "assistant",
  "content": R_best}], "rejected": [{"role": "assistant", "content": R_worst}]}`, only for
  queries whose best and worst rounds differ in score (and in text).

R is `<TAG>CHAIN</TAG>\\nREPLY` with the chain behind that reply written out as the
assistant's reasoning, or just `REPLY` when the tag is `none`. The query's own system
message, if any, is kept; Oyster's steering instructions are not (the model is to learn to
reason its own way there). Rows whose reply fails the responder's verification, or whose
safety score is below `min_safety`, are left out (for a preference row: its chosen side).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from oyster.errors import InputError
from oyster.lingobp.records import QueryResult, RoundRecord, RunStore
from oyster.lingobp.render import chain_text

ExportFormat = Literal["sft", "preference"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("sft", "preference")
NO_TAG = "none"
_TAG = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")


def check_tag(tag: str) -> str | None:
    """The reasoning tag to use (`None` for `none`); raises `InputError` on a bad name."""
    if tag == NO_TAG:
        return None
    if not _TAG.match(tag):
        raise InputError(f"reasoning tag {tag!r}: use a name like 'think' (letters, digits, "
                         f"_ . -), or 'none' to drop the chain")
    return tag


def assistant_content(record: RoundRecord, tag: str | None) -> str:
    if tag is None:
        return record.reply
    return f"<{tag}>{chain_text(record.effective_chain)}</{tag}>\n{record.reply}"


def _usable(record: RoundRecord, min_safety: float) -> str | None:
    """Why `record` may not be trained on, or None."""
    if not record.verification.passed:
        return "failed_verification"
    if record.scores.safety is None:
        return "safety_undetermined"
    if record.scores.safety < min_safety:
        return "below_min_safety"
    return None


def _prompt(result: QueryResult) -> list[dict[str, Any]]:
    return [m.model_dump() for m in result.query.messages]


class ExportSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: ExportFormat
    out: str
    rows: int
    queries: int
    skipped: dict[str, int]


def sft_rows(results: Iterable[QueryResult], tag: str | None, min_safety: float
             ) -> tuple[list[dict[str, Any]], Counter[str]]:
    rows, skipped = [], Counter[str]()
    for result in results:
        best = result.round_record(result.best_round)
        if (why := _usable(best, min_safety)) is not None:
            skipped[why] += 1
            continue
        rows.append({"messages": [*_prompt(result), {"role": "assistant",
                                                       "content": assistant_content(best, tag)}]})
    return rows, skipped


def preference_rows(results: Iterable[QueryResult], tag: str | None, min_safety: float
                    ) -> tuple[list[dict[str, Any]], Counter[str]]:
    rows, skipped = [], Counter[str]()
    for result in results:
        pair = result.preference
        if pair is None:
            skipped["no_score_difference"] += 1
            continue
        chosen = result.round_record(pair.chosen_round)
        rejected = result.round_record(pair.rejected_round)
        if (why := _usable(chosen, min_safety)) is not None:
            skipped[f"chosen_{why}"] += 1
            continue
        chosen_text, rejected_text = assistant_content(chosen, tag), assistant_content(rejected, tag)
        if chosen_text == rejected_text:
            skipped["identical_replies"] += 1
            continue
        rows.append({"prompt": _prompt(result),
                     "chosen": [{"role": "assistant", "content": chosen_text}],
                     "rejected": [{"role": "assistant", "content": rejected_text}]})
    return rows, skipped


def export(run_dir: str | Path, format: ExportFormat, out: str | Path, tag: str = "think",
           min_safety: float = 1.0) -> ExportSummary:
    """Write the run's SFT or preference rows to `out` (replaced atomically)."""
    if format not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {format!r}; use sft or preference")
    store = RunStore(run_dir)
    store.manifest()  # a clear error when run_dir is not a run
    results = store.results()
    if not results:
        raise InputError(f"{run_dir}: no finished queries to export yet")
    make = sft_rows if format == "sft" else preference_rows
    rows, skipped = make(results, check_tag(tag), min_safety)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with open(partial, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    partial.replace(target)
    return ExportSummary(format=format, out=str(target), rows=len(rows), queries=len(results),
                         skipped=dict(skipped))
