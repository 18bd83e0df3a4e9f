"""The bare model's own replies to a run's queries, judged: what the model says with no
engine in front of it, which is what a bare benchmark measures and what training moves.

`oyster lingobp bare RUN_DIR` asks the backend (by default the run's) for one reply to each
finished query's conversation as is — no system prompt, no chain — and verifies it against
the query's round-0 decision and judges it with the run's judges (a reply cut off by the
token limit is first trimmed to its last finished sentence, as the responder trims its
own). One `BareRecord` per query goes to `RUN_DIR/bare.jsonl` (fsynced; queries already
there are skipped, so a killed pass continues where it stopped). The export offers a bare
reply as a rejected reply where it failed verification, where the judges found it unsafe
or refusing a benign ask, or where it merely scored lower than the chosen reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from oyster._jsonl import append_jsonl, read_jsonl, repair_torn_tail
from oyster.backends.base import ChatBackend, GenerationParams
from oyster.errors import OysterError
from oyster.judges.base import RefusalVerdict, SafetyVerdict, SatisfactionVerdict
from oyster.lingobp.optimizer import LingoBP
from oyster.lingobp.records import QueryResult, RoundScores
from oyster.respond.responder import complete_sentences
from oyster.respond.verify import Verification

BARE_FILE = "bare.jsonl"


class BareRecord(BaseModel):
    """One query's bare reply, its verification and the judges' verdicts."""

    model_config = ConfigDict(frozen=True)

    query_id: str
    backend: str
    reply: str
    finish_reason: str
    verification: Verification
    satisfaction: SatisfactionVerdict
    safety: SafetyVerdict
    refusal: RefusalVerdict
    scores: RoundScores
    seconds: float = 0.0


def bare_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / BARE_FILE


def read_bare(run_dir: str | Path) -> dict[str, BareRecord]:
    """The bare records of a run by query id (none when the pass was never run)."""
    return {r.query_id: r for r in read_jsonl(bare_path(run_dir), BareRecord)}


def bare_record(lingo: LingoBP, backend: ChatBackend, params: GenerationParams,
                result: QueryResult) -> BareRecord:
    started = time.perf_counter()
    query = result.query
    messages = list(query.messages)
    completion = backend.complete(messages, params)
    # cut at the last finished sentence as the responder does, so a rejected reply is not
    # told apart from the chosen by a cut-off ending alone
    text = (complete_sentences(completion.text) if completion.finish_reason == "length"
            else completion.text).strip()
    decision = result.round_record(0).decision
    verification = lingo.responder.verifier.check(text, decision, request=query.last_user_text,
                                                  conversation=messages)
    satisfaction = lingo.satisfaction.judge(messages, text)
    safety = lingo.safety.judge(messages, text, lingo.judged_category(query, decision))
    refusal = lingo.refusal.classify(messages, text)
    return BareRecord(query_id=query.id, backend=backend.spec, reply=text,
                      finish_reason=completion.finish_reason, verification=verification,
                      satisfaction=satisfaction, safety=safety, refusal=refusal,
                      scores=lingo.scores(satisfaction, safety),
                      seconds=round(time.perf_counter() - started, 3))


def run_bare(lingo: LingoBP, backend: ChatBackend, params: GenerationParams,
             results: Sequence[QueryResult], run_dir: str | Path,
             on_done: Callable[[str], None] | None = None) -> dict[str, str]:
    """Write a bare record for every finished query not yet in `bare.jsonl`; returns the
    errors by query id (those queries are retried by the next pass)."""
    path = bare_path(run_dir)
    repair_torn_tail(path)
    done = set(read_bare(run_dir))
    errors: dict[str, str] = {}
    for result in results:
        if result.id in done:
            continue
        try:
            append_jsonl(path, bare_record(lingo, backend, params, result))
        except OysterError as e:
            errors[result.id] = f"{type(e).__name__}: {e}"
        if on_done:
            on_done(result.id)
    return errors
