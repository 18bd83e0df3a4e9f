"""What Lingo-BP keeps: every round, every finished query, and the run on disk.

A run directory holds:

- `run.json`: what was run (data file and its hash, backend, judges, editor, rounds, mode,
  policy, generation settings);
- `rounds.jsonl`: one `RoundRecord` per line, appended and fsynced as each round finishes;
- `results.jsonl`: one `QueryResult` per finished query (its full history, the best chain
  and reply, and the preference pair), appended and fsynced.

A kill loses nothing already written: a half-written last line is cut when the run is
resumed (and ignored when it is read), finished queries are skipped, and an unfinished
query continues from its last recorded round.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from oyster._jsonl import Manifest, RunDirectory, append_jsonl, read_jsonl
from oyster.backends.base import GenerationParams
from oyster.chain import Chain
from oyster.decision import Decision
from oyster.judges.base import RefusalVerdict, SafetyVerdict, SatisfactionVerdict
from oyster.lingobp.edit import SetEdit
from oyster.lingobp.editors import Mode
from oyster.lingobp.queries import Query
from oyster.respond.responder import Attempt, Outcome, Source
from oyster.respond.scaffold import ReplyPart
from oyster.respond.verify import Verification
from oyster.types import Strategy

ROUNDS_FILE = "rounds.jsonl"
RESULTS_FILE = "results.jsonl"

StopReason = Literal["max_scores", "no_change", "rounds_done"]


class RoundScores(BaseModel):
    """The judges' numbers for one reply; `None` where a judge could not decide."""

    model_config = ConfigDict(frozen=True)

    satisfaction: float | None
    safety: float | None
    constructive: float | None = Field(description="C_β at the run's score_beta")
    objective: float | None = Field(description="what this run's mode ranks rounds by")


class EditRecord(BaseModel):
    """How this round's chain came from the previous round's."""

    model_config = ConfigDict(frozen=True)

    editor: str
    rationale: str
    rules: list[str] = Field(default_factory=list)
    safety: SetEdit
    usefulness: SetEdit
    strategy_before: Strategy
    strategy_after: Strategy
    propagation: str
    notes: list[str] = Field(default_factory=list)


class RoundRecord(BaseModel):
    """One round: the decision (with the chain) that was carried out, the reply, its
    verification, the three verdicts and the scores. Round 0 is the engine's own chain."""

    model_config = ConfigDict(frozen=True)

    query_id: str
    round: int = Field(ge=0)
    decision: Decision
    reply: str
    reply_strategy: Strategy = Field(description="the strategy the reply text carries out")
    effective_chain: Chain = Field(description="the chain behind the reply text (differs from "
                                               "decision.chain when the responder tightened)")
    outcome: Outcome
    verification: Verification
    source: Source | None = Field(default=None, description=(
        "who wrote the reply: the model, the policy (scaffold, correction, refusal) or both; "
        "None in runs recorded before it was kept"))
    parts: list[ReplyPart] = Field(default_factory=list,
                                   description="the reply's parts and who wrote each")
    attempts: list[Attempt] = Field(default_factory=list, description=(
        "the model's generations for this round, each with its verification (a failed one "
        "is a rejected reply for preference data)"))
    satisfaction: SatisfactionVerdict
    safety: SafetyVerdict
    refusal: RefusalVerdict
    scores: RoundScores
    edit: EditRecord | None = None
    seconds: float = 0.0


class Preference(BaseModel):
    model_config = ConfigDict(frozen=True)

    chosen_round: int
    rejected_round: int
    margin: float


class Best(BaseModel):
    model_config = ConfigDict(frozen=True)

    round: int
    strategy: Strategy
    chain: Chain
    reply: str
    scores: RoundScores


class QueryResult(BaseModel):
    """One finished query: every round, which was best and worst, and why it stopped."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    query: Query
    mode: Mode
    stopped: StopReason
    note: str = ""
    best_round: int
    worst_round: int
    rounds: list[RoundRecord]

    def round_record(self, index: int) -> RoundRecord:
        return next(r for r in self.rounds if r.round == index)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def best(self) -> Best:
        r = self.round_record(self.best_round)
        return Best(round=r.round, strategy=r.reply_strategy, chain=r.effective_chain,
                    reply=r.reply, scores=r.scores)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def preference(self) -> Preference | None:
        """Best vs worst round, when their scores differ."""
        best, worst = self.round_record(self.best_round), self.round_record(self.worst_round)
        if best.scores.objective is None or worst.scores.objective is None \
                or best.scores.objective <= worst.scores.objective:
            return None
        return Preference(chosen_round=best.round, rejected_round=worst.round,
                          margin=round(best.scores.objective - worst.scores.objective, 6))


class RunManifest(Manifest):
    """What a run is; a resumed run must match it in every field of `RESUME_FIELDS`."""

    data: str
    data_sha256: str
    backend: str
    judge: str
    editor: str
    rounds: int
    mode: Mode
    policy: str
    policy_fingerprint: str
    assessor: str
    generation: GenerationParams
    limit: int | None = None
    started: str = ""
    oyster_version: str = ""

    RESUME_FIELDS: ClassVar[tuple[str, ...]] = ("data_sha256", "backend", "judge", "editor", "rounds",
                                      "mode", "policy_fingerprint", "assessor", "generation")


class RunStore(RunDirectory[RunManifest]):
    """The files of one run directory; appends are durable line by line."""

    manifest_type = RunManifest
    kind = "Lingo-BP run"
    appended_files = (ROUNDS_FILE, RESULTS_FILE)
    must_start_empty = True  # a fresh run never mixes its files with unrelated ones

    @property
    def rounds_path(self) -> Path:
        return self.path / ROUNDS_FILE

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    def manifest(self) -> RunManifest:
        return self._read_manifest()

    def rounds(self) -> dict[str, list[RoundRecord]]:
        """Recorded rounds by query id, in round order (a round written twice: the last)."""
        by_key: dict[tuple[str, int], RoundRecord] = {}
        for r in read_jsonl(self.rounds_path, RoundRecord):
            by_key[(r.query_id, r.round)] = r
        out: dict[str, list[RoundRecord]] = {}
        for (qid, _), r in sorted(by_key.items(), key=lambda kv: kv[0]):
            out.setdefault(qid, []).append(r)
        return out

    def results(self) -> list[QueryResult]:
        """Finished queries in the order they finished (a query written twice: the last)."""
        by_id = {r.id: r for r in read_jsonl(self.results_path, QueryResult)}
        return list(by_id.values())

    def append_round(self, record: RoundRecord) -> None:
        append_jsonl(self.rounds_path, record)

    def append_result(self, result: QueryResult) -> None:
        append_jsonl(self.results_path, result)
