"""A durable Lingo-BP run over a query file: build the parts from spec strings, then
optimise every query not yet finished, writing each round and each result as it arrives."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from oyster.backends.base import GenerationParams
from oyster.errors import InputError, OysterError
from oyster.lingobp.editors import LLMEditor, Mode, RuleEditor, StrategyEditor
from oyster.lingobp.llm import LLM_STEP_PARAMS
from oyster.lingobp.optimizer import LingoBP
from oyster.lingobp.propagate import ChainPropagator, LLMPropagator, RulePropagator
from oyster.lingobp.queries import Query
from oyster.lingobp.records import QueryResult, RoundRecord, RunManifest, RunStore

DoneHook = Callable[[str], None]


def judge_spec(judge: str, backend: str) -> str:
    """`local`, `llm:SPEC`, or `llm` meaning the run's own backend."""
    return f"llm:{backend}" if judge == "llm" else judge


def editor_spec(editor: str, judge: str, backend: str) -> str:
    """`rule`, `llm:SPEC`, `llm` (the run's backend), or `auto`: the LLM editor when the
    judges are LLMs, else the rules."""
    if editor == "auto":
        editor = "llm" if judge.startswith("llm") else "rule"
    if editor == "llm":
        return f"llm:{backend}"
    if editor == "rule" or (editor.startswith("llm:") and len(editor) > 4):
        return editor
    raise InputError(f"unknown editor {editor!r}; use auto, rule, llm or llm:BACKEND_SPEC")


class RunSpec(BaseModel):
    """The parts of a run, by spec string (the CLI's options)."""

    model_config = ConfigDict(frozen=True)

    backend: str = "embedded"
    judge: str = Field(default="local", description="local, llm (the run's backend) or llm:SPEC")
    editor: str = Field(default="auto", description="auto, rule, llm or llm:SPEC")
    assessor: str = "default"
    policy: str | None = Field(default=None, description="policy file (None: the packaged one)")
    rounds: int = Field(default=3, ge=0, le=20)
    mode: Mode = "both"

    @property
    def judges(self) -> str:
        return judge_spec(self.judge, self.backend)

    @property
    def edits(self) -> str:
        return editor_spec(self.editor, self.judges, self.backend)


def build(spec: RunSpec, params: GenerationParams | None = None) -> LingoBP:
    """A `LingoBP` from spec strings; raises `OysterError` on a bad spec."""
    from oyster.backends import from_spec
    from oyster.engine import Engine
    from oyster.judges import RefusalClassifier, SafetyJudge, SatisfactionJudge
    from oyster.respond import Responder

    engine = Engine(policy=spec.policy, assessor=spec.assessor)
    responder = Responder(engine, from_spec(spec.backend), params)
    judges, edits = spec.judges, spec.edits
    strategy_editor: StrategyEditor = RuleEditor()
    propagator: ChainPropagator = RulePropagator(engine.policy)
    if edits != "rule":
        edit_backend = from_spec(edits.removeprefix("llm:"))
        # the LLM steps get as long as a reply does
        step_params = LLM_STEP_PARAMS.model_copy(update={"timeout": responder.params.timeout})
        strategy_editor = LLMEditor(edit_backend, step_params)
        propagator = LLMPropagator(edit_backend, engine.policy, step_params)
    return LingoBP(responder, SatisfactionJudge.from_spec(judges),
                   SafetyJudge.from_spec(judges, policy=engine.policy),
                   RefusalClassifier.from_spec(judges), strategy_editor, propagator,
                   rounds=spec.rounds, mode=spec.mode)


def manifest(spec: RunSpec, lingo: LingoBP, data: str | Path, limit: int | None) -> RunManifest:
    """The run description for `lingo`, built from `spec`, on the query file `data`."""
    path = Path(data)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        oyster_version = version("oyster-csa")
    except PackageNotFoundError:
        oyster_version = "unknown"
    return RunManifest(
        data=str(path.resolve()), data_sha256=digest, backend=spec.backend, judge=spec.judges,
        editor=spec.edits, rounds=spec.rounds, mode=spec.mode, policy=lingo.policy.label,
        policy_fingerprint=lingo.policy.fingerprint(), assessor=spec.assessor,
        generation=lingo.responder.params, limit=limit,
        started=datetime.now(UTC).isoformat(timespec="seconds"), oyster_version=oyster_version)


class RunReport(BaseModel):
    """What one `run_queries` call did."""

    model_config = ConfigDict(frozen=True)

    queries: int
    finished_now: int
    already_finished: int
    continued: int = Field(description="unfinished queries picked up from their last round")
    errors: dict[str, str] = Field(default_factory=dict, description="query id -> error; "
                                   "retried by the next --resume")


def _todo(queries: Sequence[Query], store: RunStore
          ) -> tuple[list[tuple[Query, list[RoundRecord]]], int]:
    finished = {r.id for r in store.results()}
    recorded = store.rounds()
    todo = [(q, recorded.get(q.id, [])) for q in queries if q.id not in finished]
    return todo, len(queries) - len(todo)


def _report(queries: Sequence[Query], todo: Sequence[tuple[Query, list[RoundRecord]]],
            skipped: int, errors: dict[str, str]) -> RunReport:
    return RunReport(queries=len(queries), finished_now=len(todo) - len(errors),
                     already_finished=skipped, continued=sum(1 for _, d in todo if d),
                     errors=errors)


def run_queries(lingo: LingoBP, queries: Sequence[Query], store: RunStore,
                on_done: DoneHook | None = None) -> RunReport:
    """Optimise every query `store` has not finished, one after another. A query that fails
    (backend or judge error) keeps its recorded rounds and is retried by the next resume."""
    todo, skipped = _todo(queries, store)
    errors: dict[str, str] = {}
    for query, done in todo:
        try:
            store.append_result(lingo.optimize(query, done, store.append_round))
        except OysterError as e:
            errors[query.id] = f"{type(e).__name__}: {e}"
        if on_done:
            on_done(query.id)
    return _report(queries, todo, skipped, errors)


async def arun_queries(lingo: LingoBP, queries: Sequence[Query], store: RunStore,
                       concurrency: int = 1, on_done: DoneHook | None = None) -> RunReport:
    """`run_queries` with up to `concurrency` queries in flight."""
    todo, skipped = _todo(queries, store)
    errors: dict[str, str] = {}
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(query: Query, done: list[RoundRecord]) -> None:
        async with gate:
            try:
                store.append_result(await lingo.aoptimize(query, done, store.append_round))
            except OysterError as e:
                errors[query.id] = f"{type(e).__name__}: {e}"
            if on_done:
                on_done(query.id)

    await asyncio.gather(*(one(q, d) for q, d in todo))
    return _report(queries, todo, skipped, errors)


QueryOutcome = tuple[list[RoundRecord], QueryResult | None, str | None]
"""A query's new rounds, its result (None if it failed) and the error."""


@dataclass(frozen=True)
class LingoWorker:
    """Builds, on a Ray worker, the `LingoBP` a run builds (picklable); optimises each query
    of a chunk and returns its new rounds with its result."""

    spec: RunSpec
    params: GenerationParams | None = None

    def __call__(self) -> Callable[[list[tuple[Query, list[RoundRecord]]]], list[QueryOutcome]]:
        lingo = build(self.spec, self.params)

        def run_chunk(chunk: list[tuple[Query, list[RoundRecord]]]) -> list[QueryOutcome]:
            out: list[QueryOutcome] = []
            for query, done in chunk:
                rounds: list[RoundRecord] = []
                try:
                    out.append((rounds, lingo.optimize(query, done, rounds.append), None))
                except OysterError as e:
                    out.append((rounds, None, f"{type(e).__name__}: {e}"))
            return out

        return run_chunk


def run_queries_on_ray(worker: LingoWorker, queries: Sequence[Query], store: RunStore,
                       address: str, workers: int | None = None, chunk: int = 1,
                       on_done: DoneHook | None = None) -> RunReport:
    """`run_queries` on Ray workers. A query's rounds reach the run directory when the query
    ends (with its result), in query order; a run killed meanwhile redoes the queries in
    flight on `--resume`, from their last round written."""
    from oyster.raypool import RayPool, chunked, connect

    todo, skipped = _todo(queries, store)
    errors: dict[str, str] = {}
    pool: RayPool[tuple[Query, list[RoundRecord]], QueryOutcome] = RayPool(
        connect(address, workers), worker)
    try:
        outcomes = (o for batch in pool.map(chunked(todo, chunk)) for o in batch)
        for (query, _), (rounds, result, error) in zip(todo, outcomes, strict=True):
            for record in rounds:
                store.append_round(record)
            if result is not None:
                store.append_result(result)
            else:
                errors[query.id] = error or "failed"
            if on_done:
                on_done(query.id)
    finally:
        pool.close()
    return _report(queries, todo, skipped, errors)
