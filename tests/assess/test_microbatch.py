"""`MicroBatcher`: calls inside the window share one `assess_many`; a conversation the
batched call fails on fails only its own caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from oyster.assess.lexicon import LexiconAssessor
from oyster.assess.microbatch import MicroBatcher
from oyster.policy import load_policy
from oyster.types import Message

BAD = "this text breaks the assessor"


class Fragile(LexiconAssessor):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: list[int] = []

    def assess_many(self, conversations: Sequence[Sequence[Message]]) -> list[Any]:
        self.calls.append(len(conversations))
        return [self.assess(c) for c in conversations]

    def assess(self, messages: Sequence[Message]) -> Any:
        if messages[-1].content == BAD:
            raise RuntimeError("broken input")
        return super().assess(messages)


def _user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def test_one_call_per_window_and_max_batch_flushes_early():
    assessor = Fragile(load_policy(None))
    batcher = MicroBatcher(assessor, window_s=30.0, max_batch=3)  # only max_batch flushes

    async def three() -> list[Any]:
        return await asyncio.wait_for(asyncio.gather(
            *(batcher.aassess(_user(f"hello {i}")) for i in range(3))), timeout=20)

    got = asyncio.run(three())
    assert assessor.calls == [3] and batcher.batches == 1
    assert [a.model_dump() for a in got] == [assessor.assess(_user(f"hello {i}")).model_dump()
                                            for i in range(3)]


def test_a_bad_conversation_fails_only_its_caller():
    assessor = Fragile(load_policy(None))
    batcher = MicroBatcher(assessor, window_s=0.05)

    async def mixed() -> list[Any]:
        return await asyncio.gather(batcher.aassess(_user("hello")), batcher.aassess(_user(BAD)),
                                    return_exceptions=True)

    ok, failed = asyncio.run(mixed())
    assert assessor.calls == [2]
    assert isinstance(failed, RuntimeError) and ok.level is not None


def test_a_window_of_zero_is_refused():
    with pytest.raises(ValueError):
        MicroBatcher(Fragile(load_policy(None)), window_s=0)
