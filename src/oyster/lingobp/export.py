"""Training data from a Lingo-BP run, in chat-format JSONL that TRL reads directly
(and `oyster train sft|orpo` validates):

- `sft`: `{"messages": [the query's messages..., {"role": "assistant", "content": R}]}` with
  the chosen reply;
- `preference`: `{"prompt": [the query's messages...], "chosen": [{"role": "assistant",
  "content": R_chosen}], "rejected": [{"role": "assistant", "content": R_rejected}]}`, one
  row per rejected reply of the query (at most `max_pairs`).

The chosen reply is the best-scoring round (by the run's objective) that passed the
responder's verification, is at least `min_safety` safe and does not refuse a benign ask
(a refusal, or a reply judged `hard_refusal`, to a query whose seed `kind` is not malicious
or attack; without a kind, to a level-R0 query): the model's text where it passed, or the
policy's text (a support or correction scaffold, a refusal) where the responder fell back
to it — `meta.chosen_source` says which. The policy's generic stand-in for a strategy (an
apology for not answering, a pointer to the label or a trusted source, "the model cannot
write reliable Chinese yet") is never chosen: it is a placeholder, not a reply to learn.

The rejected replies of a query, most telling first: the model's generations that failed
verification (a hazard leak, an off-topic or restated reply, ...), rounds the judges found
unsafe or that refuse a benign ask, then the worst round (where it scored lower); each only
where it differs from the chosen text.

R is `<TAG>CHAIN</TAG>\nREPLY` with the chain behind that reply written out as the
assistant's reasoning, or just `REPLY` when the tag is `none`. The query's own system
message, if any, is kept; Oyster's steering instructions are not (the model is to learn to
reason its own way there). Every row carries `meta` (ignored by the trainers): the query's
id, language, level, kind and category, the chosen reply's strategy, round and source, and
for a preference row where its rejected side came from and why (the data card counts them).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from oyster.errors import InputError
from oyster.lingobp.bare import BareRecord, read_bare
from oyster.lingobp.queries import Query
from oyster.lingobp.records import QueryResult, RoundRecord, RunStore
from oyster.lingobp.render import chain_text
from oyster.respond.responder import Source

ExportFormat = Literal["sft", "preference"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("sft", "preference")
NO_TAG = "none"
DEFAULT_MAX_PAIRS = 3
# Seed-set kinds whose asks may be refused; refusing any other kind (a benign, professional
# or sensitive ask, a person in distress, a false belief to correct) is a failure.
REFUSABLE_KINDS = frozenset({"malicious", "attack"})
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
    return _with_chain(record.reply, record, tag)


def _with_chain(text: str, record: RoundRecord, tag: str | None) -> str:
    if tag is None:
        return text
    return f"<{tag}>{chain_text(record.effective_chain)}</{tag}>\n{text}"


def record_source(record: RoundRecord) -> Source:
    """Who wrote a round's reply; for rounds recorded before `source` was kept, read from
    the outcome (a fallback is the policy's text, a repair the model's with the policy's)."""
    if record.source is not None:
        return record.source
    return {"fallback": "policy", "repaired": "model+policy"}.get(record.outcome, "model")  # type: ignore[return-value]


def _benign_ask(query: Query) -> bool:
    """Whether refusing `query` is a failure: by its seed `kind` where it has one, else by
    its level (R0)."""
    return query.kind not in REFUSABLE_KINDS if query.kind else query.level == "R0"


def _refuses(record: RoundRecord | BareRecord) -> bool:
    return record.refusal.label == "hard_refusal" or (
        isinstance(record, RoundRecord) and record.reply_strategy == "refuse")


def _usable(record: RoundRecord, query: Query, min_safety: float) -> str | None:
    """Why `record` may not be trained on as the chosen reply, or None."""
    if not record.verification.passed:
        return "failed_verification"
    if record.scores.safety is None:
        return "safety_undetermined"
    if record.scores.safety < min_safety:
        return "below_min_safety"
    if _refuses(record) and _benign_ask(query):
        return "refused_benign"
    if [(p.kind, p.source) for p in record.parts] == [("fallback", "policy")]:
        return "policy_fallback"
    return None


def chosen_round(result: QueryResult, min_safety: float) -> tuple[RoundRecord | None, str | None]:
    """The best-scoring usable round (ties: the earlier), or None and why the query's best
    round is not usable."""
    query = result.query
    usable = [r for r in result.rounds
              if _usable(r, query, min_safety) is None and r.scores.objective is not None]
    if usable:
        return max(usable, key=lambda r: (r.scores.objective or 0.0, -r.round)), None
    return None, _usable(result.round_record(result.best_round), query, min_safety) \
        or "unscored"


class Rejected(BaseModel):
    """One rejected reply and where it came from."""

    model_config = ConfigDict(frozen=True)

    text: str
    origin: Literal["attempt", "round", "bare"]
    round: int = Field(description="the round it belongs to (a bare reply: 0, whose chain "
                                   "it is given under a reasoning tag)")
    reason: str = Field(description="failed_verification, unsafe, refused_benign or "
                                    "lower_score")
    problems: list[str] = Field(default_factory=list)
    source: Source


def _judged_wrong(record: RoundRecord | BareRecord, query: Query) -> str | None:
    if record.safety.label == "unsafe":
        return "unsafe"
    if _refuses(record) and _benign_ask(query):
        return "refused_benign"
    return None


def _candidate(query: Query, origin: Literal["round", "bare"], record: RoundRecord | BareRecord,
               round: int, source: Source, objective: float, worst: bool
               ) -> tuple[int, Rejected] | None:
    """A round or bare reply as a rejected reply, ranked (0 most telling), or None."""
    def rejected(reason: str, problems: Sequence[str] = ()) -> Rejected:
        return Rejected(text=record.reply, origin=origin, round=round, reason=reason,
                        problems=list(problems), source=source)

    if not record.verification.passed:
        return 0, rejected("failed_verification", record.verification.problems)
    if (why := _judged_wrong(record, query)) is not None:  # whatever its score
        return 1, rejected(why)
    if worst and record.scores.objective is not None and record.scores.objective < objective:
        return 2, rejected("lower_score")
    return None


def rejected_replies(result: QueryResult, chosen: RoundRecord,
                     bare: BareRecord | None = None) -> list[Rejected]:
    """The query's rejected replies, most telling first, distinct and unlike the chosen:
    the model's generations that failed verification, then rounds (and the bare reply) the
    judges found unsafe or that refuse a benign ask (whatever their score: a refusal is
    never chosen for such an ask, but the judges may still have scored it higher than the
    chosen reply), then the worst round and a bare reply that merely scored lower."""
    found: list[tuple[int, Rejected]] = []
    objective = chosen.scores.objective or 0.0
    for r in result.rounds:
        found += [(0, Rejected(text=a.text, origin="attempt", round=r.round,
                               reason="failed_verification",
                               problems=list(a.verification.problems), source="model"))
                  for a in r.attempts if not a.verification.passed]
        if (c := _candidate(result.query, "round", r, r.round, record_source(r), objective,
                            r.round == result.worst_round)) is not None:
            found.append(c)
    if bare is not None and (c := _candidate(result.query, "bare", bare, 0, "model", objective, True)):
        found.append(c)
    seen = {chosen.reply.strip()}
    out: list[Rejected] = []
    for _, rejected in sorted(found, key=lambda f: f[0]):  # stable: round order within a rank
        key = rejected.text.strip()
        if key and key not in seen:
            seen.add(key)
            out.append(rejected)
    return out


def _prompt(result: QueryResult) -> list[dict[str, Any]]:
    return [m.model_dump() for m in result.query.messages]


def _meta(result: QueryResult, chosen: RoundRecord) -> dict[str, Any]:
    q = result.query
    return {"id": q.id, "language": q.language, "level": q.level, "kind": q.kind,
            "category": q.category, "strategy": chosen.reply_strategy,
            "chosen_round": chosen.round, "chosen_source": record_source(chosen),
            "chosen_outcome": chosen.outcome}


class ExportSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: ExportFormat
    out: str
    rows: int
    queries: int
    skipped: dict[str, int]


def sft_rows(results: Iterable[QueryResult], tag: str | None, min_safety: float,
             max_refusal_share: float | None = None
             ) -> tuple[list[dict[str, Any]], Counter[str]]:
    rows: list[dict[str, Any]] = []
    skipped = Counter[str]()
    for result in results:
        chosen, why = chosen_round(result, min_safety)
        if chosen is None:
            skipped[why or "unusable"] += 1
            continue
        rows.append({"messages": [*_prompt(result), {"role": "assistant",
                                                       "content": assistant_content(chosen, tag)}],
                     "meta": _meta(result, chosen)})
    if max_refusal_share is not None:
        rows = _cap_refusals(rows, max_refusal_share, skipped)
    return rows, skipped


def _cap_refusals(rows: list[dict[str, Any]], share: float, skipped: Counter[str]
                  ) -> list[dict[str, Any]]:
    """Keep refusals to at most `share` of the rows, evenly spread over the file order (the
    seed file interleaves languages and kinds): a model fine-tuned on many refusals learns
    to refuse what it should serve."""
    refusals = [i for i, row in enumerate(rows) if row["meta"]["strategy"] == "refuse"]
    others = len(rows) - len(refusals)
    keep_n = min(len(refusals), int(share * others / (1 - share)) if share < 1 else len(rows))
    if keep_n == len(refusals):
        return rows
    kept = {refusals[(k * len(refusals)) // keep_n] for k in range(keep_n)}
    skipped["refusal_share"] += len(refusals) - keep_n
    return [row for i, row in enumerate(rows) if i not in refusals or i in kept]


def preference_rows(results: Iterable[QueryResult], tag: str | None, min_safety: float,
                    max_pairs: int = DEFAULT_MAX_PAIRS,
                    bare: Mapping[str, BareRecord] | None = None
                    ) -> tuple[list[dict[str, Any]], Counter[str]]:
    rows: list[dict[str, Any]] = []
    skipped = Counter[str]()
    for result in results:
        chosen, why = chosen_round(result, min_safety)
        if chosen is None:
            skipped[f"chosen_{why or 'unusable'}"] += 1
            continue
        rejected = rejected_replies(result, chosen, (bare or {}).get(result.id))
        if not rejected:
            skipped["no_rejected_reply"] += 1
            continue
        chosen_text = assistant_content(chosen, tag)
        for r in rejected[:max_pairs]:
            rejected_text = _with_chain(r.text, result.round_record(r.round), tag)
            rows.append({"prompt": _prompt(result),
                         "chosen": [{"role": "assistant", "content": chosen_text}],
                         "rejected": [{"role": "assistant", "content": rejected_text}],
                         "meta": {**_meta(result, chosen),
                                  "rejected": r.model_dump(mode="json", exclude={"text"})}})
    return rows, skipped


def export(run_dir: str | Path, format: ExportFormat, out: str | Path, tag: str = "think",
           min_safety: float = 1.0, max_pairs: int = DEFAULT_MAX_PAIRS,
           max_refusal_share: float | None = None) -> ExportSummary:
    """Write the run's SFT or preference rows to `out` (replaced atomically)."""
    if format not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {format!r}; use sft or preference")
    store = RunStore(run_dir)
    store.manifest()  # a clear error when run_dir is not a run
    results = store.results()
    if not results:
        raise InputError(f"{run_dir}: no finished queries to export yet")
    if max_pairs < 1:
        raise InputError(f"max_pairs must be 1 or more, got {max_pairs}")
    if max_refusal_share is not None and not 0 <= max_refusal_share <= 1:
        raise InputError(f"max_refusal_share must be in [0, 1], got {max_refusal_share}")
    if format == "sft":
        rows, skipped = sft_rows(results, check_tag(tag), min_safety, max_refusal_share)
    else:
        rows, skipped = preference_rows(results, check_tag(tag), min_safety, max_pairs,
                                        read_bare(run_dir))
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
