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

import os
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field

from oyster.backends.base import GenerationParams
from oyster.chain import Chain
from oyster.decision import Decision
from oyster.errors import InputError
from oyster.judges.base import RefusalVerdict, SafetyVerdict, SatisfactionVerdict
from oyster.lingobp.edit import SetEdit
from oyster.lingobp.editors import Mode
from oyster.lingobp.queries import Query
from oyster.respond.responder import Outcome
from oyster.respond.verify import Verification
from oyster.types import Strategy

RUN_FILE = "run.json"
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


class RunManifest(BaseModel):
    """What a run is; a resumed run must match it in every field of `RESUME_FIELDS`."""

    model_config = ConfigDict(extra="ignore")

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

    def differs_from(self, other: RunManifest) -> list[str]:
        return [f for f in self.RESUME_FIELDS if getattr(self, f) != getattr(other, f)]


M = TypeVar("M", bound=BaseModel)


class RunStore:
    """The files of one run directory; appends are durable line by line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def rounds_path(self) -> Path:
        return self.path / ROUNDS_FILE

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    def manifest(self) -> RunManifest:
        p = self.path / RUN_FILE
        try:
            return RunManifest.model_validate_json(p.read_text("utf-8"))
        except OSError as e:
            raise InputError(f"{self.path}: not a Lingo-BP run directory ({RUN_FILE}: "
                             f"{e.strerror or e})") from None
        except ValidationError as e:
            raise InputError(f"{p}: invalid run description: {e.errors()[0]['msg']}") from None

    def start(self, manifest: RunManifest, resume: bool) -> None:
        """Create the run, or check that `manifest` matches the run being resumed."""
        if (self.path / RUN_FILE).exists():
            if not resume:
                raise InputError(f"{self.path} already holds a Lingo-BP run; pass --resume to "
                                 "continue it or choose another --out")
            differs = self.manifest().differs_from(manifest)
            if differs:
                raise InputError(f"{self.path}: cannot resume: {', '.join(differs)} differ from "
                                 "the run already there")
            for p in (self.rounds_path, self.results_path):
                _cut_partial_line(p)
        elif self.path.exists() and any(self.path.iterdir()):
            raise InputError(f"{self.path}: exists and is not empty; choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / RUN_FILE).write_text(manifest.model_dump_json(indent=2) + "\n", "utf-8")

    def rounds(self) -> dict[str, list[RoundRecord]]:
        """Recorded rounds by query id, in round order (a round written twice: the last)."""
        by_key: dict[tuple[str, int], RoundRecord] = {}
        for r in _read_lines(self.rounds_path, RoundRecord):
            by_key[(r.query_id, r.round)] = r
        out: dict[str, list[RoundRecord]] = {}
        for (qid, _), r in sorted(by_key.items(), key=lambda kv: kv[0]):
            out.setdefault(qid, []).append(r)
        return out

    def results(self) -> list[QueryResult]:
        """Finished queries in the order they finished (a query written twice: the last)."""
        by_id = {r.id: r for r in _read_lines(self.results_path, QueryResult)}
        return list(by_id.values())

    def append_round(self, record: RoundRecord) -> None:
        _append(self.rounds_path, record)

    def append_result(self, result: QueryResult) -> None:
        _append(self.results_path, result)


def _append(path: Path, record: BaseModel) -> None:
    line = record.model_dump_json() + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _cut_partial_line(path: Path) -> None:
    """Cut a half-written last line (a kill during a write) so appends stay valid."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _read_lines(path: Path, model: type[M]) -> Iterator[M]:
    if not path.exists():
        return
    complete = path.read_text("utf-8").split("\n")[:-1]  # after the last newline: unfinished
    for lineno, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            yield model.model_validate_json(line)
        except ValidationError as e:
            raise InputError(f"{path}:{lineno}: invalid record: {e.errors()[0]['msg']}") from None
