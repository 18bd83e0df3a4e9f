"""Bounded work per request: the policy's `limits`, checked up front where the size is known
and charged as the work happens where it is not.

    with work_budget(policy.limits):
        assessor.assess(messages)        # the embedder charges what it embeds

Sizes (messages, characters) are checked before any work starts (`check_size`). The cost a
request causes inside the assessor (characters embedded, time) is charged to the budget of
the request being served, which a context variable carries across `asyncio.to_thread`, so
no stage below needs a budget argument. Each distinct text is charged once, whether or not
it was cached, so the same request is always accepted or always refused.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from oyster.errors import BudgetExceeded

if TYPE_CHECKING:  # the embedder imports this module: keep it free of the policy's imports
    from oyster.taxonomy.policy import RequestLimits
    from oyster.types import Message

__all__ = ["WorkBudget", "charge_embedding", "check_deadline", "check_size", "work_budget"]


@dataclass
class WorkBudget:
    """What one request may still spend."""

    limits: RequestLimits
    deadline: float
    embedded_chars: int = 0
    _charged: set[bytes] = field(default_factory=set)

    def charge(self, texts: Iterable[str]) -> None:
        for text in texts:
            key = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=16).digest()
            if key not in self._charged:
                self._charged.add(key)
                self.embedded_chars += len(text)
        if self.embedded_chars > self.limits.max_embedded_chars:
            raise BudgetExceeded(
                f"assessing this conversation needs more than {self.limits.max_embedded_chars:,}"
                " characters of text embedded (policy limits.max_embedded_chars); send fewer or "
                "shorter user messages", "max_embedded_chars")

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(
                f"assessing this conversation took longer than {self.limits.max_decide_seconds:g}"
                " s (policy limits.max_decide_seconds); send fewer or shorter messages",
                "max_decide_seconds")


_current: ContextVar[WorkBudget | None] = ContextVar("oyster_work_budget", default=None)


@contextmanager
def work_budget(limits: RequestLimits) -> Iterator[WorkBudget]:
    """Charge the work done inside this block (in this context) to a fresh budget."""
    budget = WorkBudget(limits, time.monotonic() + limits.max_decide_seconds)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def charge_embedding(texts: Sequence[str]) -> None:
    """Charge `texts` (as they will be embedded) to the current request, if any."""
    budget = _current.get()
    if budget is not None:
        budget.charge(texts)
        budget.check_time()


def check_deadline() -> None:
    budget = _current.get()
    if budget is not None:
        budget.check_time()


def check_size(messages: Sequence[Message], limits: RequestLimits) -> None:
    """Refuse a conversation larger than the limits before any work is done."""
    if len(messages) > limits.max_messages:
        raise BudgetExceeded(f"too many messages: {len(messages)} (at most "
                             f"{limits.max_messages}, policy limits.max_messages)", "max_messages")
    total = 0
    for i, m in enumerate(messages):
        if len(m.content) > limits.max_message_chars:
            raise BudgetExceeded(f"messages[{i}].content has {len(m.content):,} characters (at "
                                 f"most {limits.max_message_chars:,}, policy "
                                 "limits.max_message_chars)", "max_message_chars")
        total += len(m.content)
    if total > limits.max_total_chars:
        raise BudgetExceeded(f"the messages hold {total:,} characters (at most "
                             f"{limits.max_total_chars:,}, policy limits.max_total_chars)",
                             "max_total_chars")
