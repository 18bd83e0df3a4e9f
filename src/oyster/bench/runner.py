"""Run a benchmark: dataset × targets → judged records, appended as they arrive.

A benchmark is a dataset, one or more targets (bare backend, backend behind the engine)
and the judges it needs:

| benchmark | judges |
|---|---|
| `strata-sword` | safety (attack success), refusal type |
| `constructive` | satisfaction + safety against the item's category guideline → C_β; refusal |
| `over-refusal` | refusal type (and the engine's decisions) |
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from oyster.backends.base import GenerationParams
from oyster.bench.datasets import BenchItem
from oyster.bench.metrics import RunSummary, item_constructive, run_summary
from oyster.bench.records import ResultRecord, RunDir, record_key
from oyster.bench.targets import System, Target, TargetReply, make_targets
from oyster.errors import OysterError
from oyster.judges.base import RefusalClassifier, SafetyJudge, SatisfactionJudge
from oyster.taxonomy.policy import Policy, load_policy

BenchmarkName = Literal["strata-sword", "constructive", "over-refusal"]
BENCHMARKS: tuple[BenchmarkName, ...] = ("strata-sword", "constructive", "over-refusal")
NEEDS: dict[str, tuple[str, ...]] = {
    "strata-sword": ("safety", "refusal"),
    "constructive": ("satisfaction", "safety", "refusal"),
    "over-refusal": ("refusal",),
}


@dataclass
class JudgePanel:
    """The judges a run uses, all built from one spec (`local` or `llm:BACKEND`)."""

    spec: str
    policy: Policy = field(default_factory=load_policy)
    _refusal: RefusalClassifier | None = None
    _safety: SafetyJudge | None = None
    _satisfaction: SatisfactionJudge | None = None

    @property
    def refusal(self) -> RefusalClassifier:
        if self._refusal is None:
            self._refusal = RefusalClassifier.from_spec(self.spec)
        return self._refusal

    @property
    def safety(self) -> SafetyJudge:
        if self._safety is None:
            self._safety = SafetyJudge.from_spec(self.spec, policy=self.policy)
        return self._safety

    @property
    def satisfaction(self) -> SatisfactionJudge:
        if self._satisfaction is None:
            self._satisfaction = SatisfactionJudge.from_spec(self.spec)
        return self._satisfaction

    def guidelines(self, category: str | None) -> list[str] | None:
        if category and self.policy.has_category(category):
            return list(self.policy.category(category).guidelines)
        return None


async def judge_reply(benchmark: str, panel: JudgePanel, item: BenchItem, system: System,
                      reply: TargetReply) -> ResultRecord:
    needs = NEEDS[benchmark]
    messages = item.messages
    refusal = await panel.refusal.aclassify(messages, reply.text) if "refusal" in needs else None
    safety = (await panel.safety.ajudge(messages, reply.text, item.category,
                                        panel.guidelines(item.category))
              if "safety" in needs else None)
    satisfaction = (await panel.satisfaction.ajudge(messages, reply.text)
                    if "satisfaction" in needs else None)
    constructive = (item_constructive(satisfaction.score, safety.score if safety else None)
                    if satisfaction else None)
    return _record(item, system, reply=reply, refusal=refusal, safety=safety,
                   satisfaction=satisfaction, constructive=constructive)


def _record(item: BenchItem, system: System, **fields: Any) -> ResultRecord:
    last_user = next(m.content for m in reversed(item.messages) if m.role == "user")
    return ResultRecord(key=record_key(system, item.id), system=system, id=item.id,
                        language=item.language, level=item.level, category=item.category,
                        attack_method=item.attack_method, user_role=item.user_role,
                        prompt=last_user, **fields)


ProgressHook = Callable[[str], None]


async def run(benchmark: str, items: Sequence[BenchItem], targets: Sequence[Target],
              panel: JudgePanel, run_dir: RunDir, concurrency: int = 1,
              on_done: ProgressHook | None = None) -> int:
    """Run every (target, item) pair not yet done; return how many were run now.

    Each finished pair is appended to the run's results at once. A pair that fails (backend
    or judge error) is written with its error and retried by the next `--resume`."""
    todo = _todo(items, [t.system for t in targets], run_dir)
    by_system = {t.system: t for t in targets}
    gate = asyncio.Semaphore(max(1, concurrency))
    write_lock = asyncio.Lock()

    async def one(system: System, item: BenchItem) -> None:
        async with gate:
            record = await run_pair(benchmark, by_system[system], item, panel)
            async with write_lock:
                run_dir.append(record)
            if on_done:
                on_done(system)

    await asyncio.gather(*(one(s, i) for s, i in todo))
    return len(todo)


def _todo(items: Sequence[BenchItem], systems: Sequence[System], run_dir: RunDir
          ) -> list[tuple[System, BenchItem]]:
    done = run_dir.done_keys()
    # item-major, so a partial run has every system on the same prompts
    return [(s, i) for i in items for s in systems if record_key(s, i.id) not in done]


async def run_pair(benchmark: str, target: Target, item: BenchItem, panel: JudgePanel
                   ) -> ResultRecord:
    """One prompt through one target, judged; a backend or judge failure is recorded as
    the pair's error (retried by the next `--resume`)."""
    try:
        reply = await target.areply(item.messages, item.id)
        return await judge_reply(benchmark, panel, item, target.system, reply)
    except OysterError as e:
        return _record(item, target.system, error=f"{type(e).__name__}: {e}")


@dataclass(frozen=True)
class BenchWorker:
    """Builds, on a Ray worker, the targets and judges `oyster bench` builds (picklable);
    each chunk of (system, item) pairs runs `concurrency` at a time, results in order."""

    benchmark: str
    systems: tuple[System, ...]
    backend: str
    params: GenerationParams
    policy: str | None
    assessor: str
    backend_options: dict[str, Any]
    judges: str
    concurrency: int = 1

    def __call__(self) -> Callable[[list[tuple[System, BenchItem]]], list[ResultRecord]]:
        targets = {t.system: t for t in make_targets(self.systems, self.backend, self.params,
                                                     self.policy, self.assessor,
                                                     self.backend_options)}
        panel = JudgePanel(self.judges, load_policy(self.policy))
        loop = asyncio.new_event_loop()  # one loop for the worker's life: pooled connections

        async def run_chunk(chunk: list[tuple[System, BenchItem]]) -> list[ResultRecord]:
            gate = asyncio.Semaphore(self.concurrency)

            async def one(system: System, item: BenchItem) -> ResultRecord:
                async with gate:
                    return await run_pair(self.benchmark, targets[system], item, panel)

            return list(await asyncio.gather(*(one(s, i) for s, i in chunk)))

        return lambda chunk: loop.run_until_complete(run_chunk(chunk))


def run_on_ray(worker: BenchWorker, items: Sequence[BenchItem], run_dir: RunDir, address: str,
               workers: int | None = None, chunk: int = 8,
               on_done: ProgressHook | None = None) -> int:
    """`run` on Ray workers: the same pairs, appended in the order a one-at-a-time run
    appends them; return how many were run now."""
    from oyster.raypool import RayPool, chunked, connect

    todo = _todo(items, worker.systems, run_dir)
    pool: RayPool[tuple[System, BenchItem], ResultRecord] = RayPool(
        connect(address, workers), worker)
    try:
        for records in pool.map(chunked(todo, chunk)):
            for record in records:
                run_dir.append(record)
                if on_done:
                    on_done(record.system)
    finally:
        pool.close()
    return len(todo)


def load_items(benchmark: str, data: str) -> list[BenchItem]:
    """The dataset a run names in its `run.json` (`package:NAME` for our starter sets)."""
    from oyster.bench.datasets import load_constructive, load_prompts, load_strata_sword

    path = None if data.startswith("package:") else data
    if benchmark == "strata-sword":
        return load_strata_sword(data)
    return load_constructive(path) if benchmark == "constructive" else load_prompts(path)


async def rejudge(run_dir: RunDir, panel: JudgePanel, on_done: ProgressHook | None = None
                  ) -> int:
    """Judge the stored replies of a run again (e.g. with new judges), without generating.

    The results file is rewritten whole (to a temporary file, then renamed over it), so an
    interrupted re-judge leaves the old results intact."""
    meta = run_dir.meta()
    items = {i.id: i for i in load_items(meta.benchmark, meta.data)}
    out: list[ResultRecord] = []
    for record in run_dir.records():
        item = items.get(record.id)
        if record.ok and record.reply is not None and item is not None:
            record = await judge_reply(meta.benchmark, panel, item, record.system, record.reply)
        out.append(record)
        if on_done:
            on_done(record.system)
    run_dir.replace_records(out, meta.model_copy(update={"judges": panel.spec}))
    return len(out)


def summarize(run_dir: RunDir) -> RunSummary:
    meta = run_dir.meta()
    summary = run_summary(meta.benchmark, meta.label, run_dir.records())
    run_dir.write_summary(summary)
    return summary
