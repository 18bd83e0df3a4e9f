"""Targets: what a benchmark sends its prompts to.

- `bare`: the backend alone, the user's conversation as is.
- `engine`: the same backend behind the Oyster engine (`Responder`: decide, steer with the
  chain, verify, regenerate or fall back).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from oyster.backends.base import ChatBackend, GenerationParams
from oyster.types import Level, Message, Strategy

System = Literal["bare", "engine"]
SYSTEMS: tuple[System, ...] = ("bare", "engine")


class TargetReply(BaseModel):
    """A target's reply, with the engine's decision when there was one."""

    text: str
    latency_s: float
    finish_reason: str | None = None
    strategy: Strategy | None = None
    level: Level | None = None
    categories: list[str] = Field(default_factory=list)
    attacks: list[str] = Field(default_factory=list)
    outcome: str | None = Field(default=None, description="engine: passed / regenerated / "
                                                          "repaired / fallback")
    verification_problems: list[str] = Field(default_factory=list)
    source: str | None = Field(default=None, description="engine: who wrote the reply that "
                                                         "went out (model / model+policy / policy)")
    scaffold: str | None = Field(default=None, description="engine: the policy scaffold used")
    assessor: str | None = Field(default=None, description="engine: the assessor that decided")


class Target(ABC):
    system: System

    @abstractmethod
    async def areply(self, messages: Sequence[Message], id: str) -> TargetReply: ...

    def describe(self) -> dict[str, Any]:
        return {"system": self.system}


class BareTarget(Target):
    system: System = "bare"

    def __init__(self, backend: ChatBackend, params: GenerationParams) -> None:
        self.backend, self.params = backend, params

    async def areply(self, messages: Sequence[Message], id: str) -> TargetReply:
        start = time.perf_counter()
        completion = await self.backend.acomplete(list(messages), self.params)
        return TargetReply(text=completion.text, latency_s=round(time.perf_counter() - start, 3),
                           finish_reason=completion.finish_reason)

    def describe(self) -> dict[str, Any]:
        return {"system": self.system, "backend": self.backend.spec}


class EngineTarget(Target):
    system: System = "engine"

    def __init__(self, responder: Any) -> None:
        self.responder = responder

    async def areply(self, messages: Sequence[Message], id: str) -> TargetReply:
        start = time.perf_counter()
        reply = await self.responder.arespond(list(messages), id=id)
        d = reply.decision
        return TargetReply(
            text=reply.text, latency_s=round(time.perf_counter() - start, 3),
            finish_reason=reply.completion.finish_reason if reply.completion else None,
            strategy=reply.strategy, level=d.level, categories=[c.id for c in d.categories],
            attacks=list(d.attacks), outcome=reply.outcome,
            verification_problems=list(reply.verification.problems),
            source=reply.source, scaffold=reply.scaffold,
            assessor=d.assessment.assessor if d.assessment else None)

    def describe(self) -> dict[str, Any]:
        engine = self.responder.engine
        return {"system": self.system, "backend": self.responder.backend.spec,
                "policy": engine.policy.label, "assessor": getattr(engine.assessor, "name", "?")}


def make_targets(systems: Sequence[System], backend_spec: str, params: GenerationParams,
                 policy: str | None = None, assessor: str = "default",
                 backend_options: dict[str, Any] | None = None) -> list[Target]:
    """One target per system, sharing one backend (loaded once)."""
    from oyster.backends import from_spec

    backend = from_spec(backend_spec, **(backend_options or {}))
    targets: list[Target] = []
    for system in systems:
        if system == "bare":
            targets.append(BareTarget(backend, params))
        else:
            from oyster.engine import Engine
            from oyster.respond import Responder

            engine = Engine(policy=policy, assessor=assessor)
            targets.append(EngineTarget(Responder(engine, backend, params)))
    return targets
