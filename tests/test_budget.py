"""Bounded work per request: size limits before any work, embedding and time budgets while
assessing, and an embedder that lets a small request past a large one."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from oyster.budget import charge_embedding, work_budget
from oyster.embeddings import BaseEmbedder, EncodeGate
from oyster.engine import Engine
from oyster.errors import BudgetExceeded


def _engine(policy, assessor="lexicon", **limits) -> Engine:
    return Engine(policy.model_copy(update={"limits": policy.limits.model_copy(update=limits)}),
                  assessor)


@pytest.mark.parametrize(("limits", "messages", "limit"), [
    ({"max_messages": 3}, [{"role": "user", "content": "hi"}] * 4, "max_messages"),
    ({"max_message_chars": 10}, [{"role": "user", "content": "x" * 11}], "max_message_chars"),
    ({"max_total_chars": 15}, [{"role": "user", "content": "x" * 10}] * 2, "max_total_chars"),
])
def test_sizes_are_refused_before_any_work(policy, limits, messages, limit):
    engine = _engine(policy, **limits)
    with pytest.raises(BudgetExceeded) as err:
        engine.decide(messages)
    assert err.value.limit == limit and f"limits.{limit}" in str(err.value)


def test_embedding_budget_counts_each_distinct_text_once(policy):
    limits = policy.limits.model_copy(update={"max_embedded_chars": 100})
    with work_budget(limits) as budget:
        charge_embedding(["a" * 60, "a" * 60])  # the same text twice costs once
        assert budget.embedded_chars == 60
        with pytest.raises(BudgetExceeded) as err:
            charge_embedding(["b" * 41])
    assert err.value.limit == "max_embedded_chars"
    charge_embedding(["c" * 10_000])  # outside a request: nothing to charge


def test_the_local_assessor_is_held_to_the_budget(policy):
    engine = _engine(policy, "local", max_embedded_chars=2_000)
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"question {i} " * 60}
             for i in range(9)]
    with pytest.raises(BudgetExceeded, match="max_embedded_chars"):
        engine.decide(turns)
    assert engine.decide(turns[-1:]).level in ("R0", "R1", "R2")  # one turn fits


def test_time_budget_stops_a_slow_assessment(policy):
    class Slow(BaseEmbedder):
        def _load(self):
            return None

        def _encode(self, model, texts):
            time.sleep(0.05)
            return np.ones((len(texts), 8), dtype=np.float32)

    slow = Slow("slow", 8, sub_batch=1)
    limits = policy.limits.model_copy(update={"max_decide_seconds": 0.12})
    with work_budget(limits), pytest.raises(BudgetExceeded, match="max_decide_seconds"):
        slow.embed([f"text {i}" for i in range(20)])
    assert len(slow.embed([f"text {i}" for i in range(20)])) == 20  # no budget: all of it


def test_the_budget_follows_the_request_into_worker_threads(policy):
    engine = _engine(policy, "local", max_embedded_chars=50)
    with pytest.raises(BudgetExceeded):
        asyncio.run(engine.adecide("a question that is longer than fifty characters, surely"))


def test_the_gate_serves_the_smallest_remaining_job_first():
    gate = EncodeGate(1)
    order: list[str] = []
    held = threading.Event()
    release = threading.Event()

    def big_first_batch():
        with gate.slot(remaining=100):
            held.set()
            release.wait(5)

    def waiter(name: str, remaining: int):
        with gate.slot(remaining):
            order.append(name)

    first = threading.Thread(target=big_first_batch)
    first.start()
    held.wait(5)
    waiters = [threading.Thread(target=waiter, args=("big", 96)),
               threading.Thread(target=waiter, args=("small", 1))]
    for t in waiters:
        t.start()
        time.sleep(0.05)  # the big one queues first
    release.set()
    for t in [first, *waiters]:
        t.join(5)
    assert order == ["small", "big"]


def test_a_wide_slot_takes_every_slot_only_when_all_are_free():
    gate = EncodeGate(2)
    with gate.slot(remaining=1, wide=True) as held:
        assert held == 2
        got: list[int] = []
        other = threading.Thread(target=lambda: got.append(_held(gate, wide=False)))
        other.start()
        other.join(0.2)
        assert other.is_alive()  # both slots are taken: it waits
    other.join(5)
    assert got == [1]
    with gate.slot(remaining=1) as held:
        assert held == 1
        assert _held(gate, wide=True) == 1  # one slot is busy: a wide request gets one


def _held(gate: EncodeGate, wide: bool) -> int:
    with gate.slot(remaining=1, wide=wide) as held:
        return held


def test_only_a_lone_long_encode_is_given_every_core(monkeypatch):
    threads_seen: list[tuple[int, int]] = []

    class Wide(BaseEmbedder):
        wide_threads = 2
        wide_min_tokens = 48

        def _load(self):
            return None

        def _encode(self, model, texts, threads=1):
            threads_seen.append((len(texts), threads))
            return np.ones((len(texts), 8), dtype=np.float32)

    emb = Wide("wide", 8, concurrent=True, sub_batch=4)
    monkeypatch.setattr(emb, "_gate", EncodeGate(2))
    long_text = "a sentence of about twelve tokens, give or take a few. " * 5
    emb.embed([long_text])
    emb.embed(["a short question?"])
    emb.embed([f"{long_text} {i}" for i in range(8)])  # two sub-batches: one slot each
    assert threads_seen[:2] == [(1, 2), (1, 1)]
    assert [t for _, t in threads_seen[2:]] == [1, 1]
