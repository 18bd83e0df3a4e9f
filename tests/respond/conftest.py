"""Fixtures for the responder tests: decisions built by hand, and a scripted backend.

The scripted backend stands in for a model that misbehaves on cue (leaks a hazard, refuses,
forgets the resource): the real embedded model cannot be made to do that reliably, and the
regenerate → fallback path must be tested deterministically. End-to-end tests with the real
model are in test_responder_e2e.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from oyster.assess.base import CategoryScore
from oyster.backends.base import ChatBackend, Completion, GenerationParams
from oyster.chain import Chain
from oyster.decision import Decision
from oyster.policy import Policy
from oyster.types import Message

TYPES = ("benign", "vulnerable", "misinformed", "malicious")


def build_decision(policy: Policy, strategy: str = "answer", level: str = "R1",
                   categories: Sequence[str] = (), dominant: str = "benign",
                   language: str = "en") -> Decision:
    spec = policy.strategies[strategy]  # type: ignore[index]
    user_type = {t: (0.85 if t == dominant else 0.05) for t in TYPES}
    return Decision(
        level=level,  # type: ignore[arg-type]
        categories=[CategoryScore(id=c, name=policy.category(c).name_en, score=0.9)
                    for c in categories],
        form="statement", aggressive=False, attacks=[],
        user_type=user_type,  # type: ignore[arg-type]
        strategy=strategy,  # type: ignore[arg-type]
        utilities={s: 0.0 for s in policy.strategies},
        chain=Chain(user_needs=policy.user_types[dominant].needs,  # type: ignore[index]
                    risk_intent="The person may be at risk themselves.",
                    safety_strategies=list(spec.safety_strategies),
                    usefulness_strategies=list(spec.usefulness_strategies)),
        policy=policy.label, language=language,  # type: ignore[arg-type]
    )


class ScriptedBackend(ChatBackend):
    """Returns the given replies in order and records every prompt it was sent."""

    kind = "scripted"

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.prompts: list[list[Message]] = []

    @property
    def spec(self) -> str:
        return "scripted"

    def complete(self, messages: Sequence[Message], params: GenerationParams | None = None
                 ) -> Completion:
        self.prompts.append(list(messages))
        return Completion(text=self.replies.pop(0), model="scripted")


@pytest.fixture
def decision(policy: Policy) -> Callable[..., Decision]:
    """Build a decision: `decision(strategy=..., categories=[...], dominant=..., language=...)`."""
    def make(**kw: object) -> Decision:
        return build_decision(policy, **kw)  # type: ignore[arg-type]
    return make


@pytest.fixture
def scripted() -> type[ScriptedBackend]:
    return ScriptedBackend
