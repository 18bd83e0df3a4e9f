"""The playground's work: read a typed conversation, decide it, reply to it, and replay the
game under changed parameters (a what-if) without saving anything.

Assessments are kept in a small in-memory cache keyed by the conversation, so a what-if or
the reply that follows a decision does not assess the same messages again.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oyster.assess.base import Assessment
from oyster.decision import Decision
from oyster.engine import Engine
from oyster.errors import InputError
from oyster.respond import Reply, Responder
from oyster.taxonomy.policy import Policy
from oyster.types import USER_TYPES, Message, Strategy, UserType, to_messages

_ROLE_LINE = re.compile(r"^\s*(user|assistant|system|用户|助手|系统)\s*[:：]\s?(.*)$",
                        re.IGNORECASE)
_ROLES = {"user": "user", "assistant": "assistant", "system": "system",
          "用户": "user", "助手": "assistant", "系统": "system"}
BETA_SWEEP = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)


def parse_conversation(text: str) -> list[Message]:
    """A conversation typed into the playground: a JSON list of {role, content}; or turns
    each starting with `user:` / `assistant:` / `system:` (or 用户： / 助手： / 系统：) at the
    start of a line; or, with neither, the whole text as one user message."""
    stripped = text.strip()
    if not stripped:
        raise InputError("type a message first")
    if stripped.startswith("["):
        try:
            raw = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise InputError(f"the conversation looks like JSON but is not: {e.msg} "
                             f"(line {e.lineno}, column {e.colno})") from None
        return to_messages(raw)
    turns: list[dict[str, str]] = []
    for line in stripped.splitlines():
        found = _ROLE_LINE.match(line)
        if found:
            turns.append({"role": _ROLES[found.group(1).lower()], "content": found.group(2)})
        elif turns:
            turns[-1]["content"] += "\n" + line
        else:
            turns.append({"role": "user", "content": line})
    for t in turns:
        t["content"] = t["content"].strip()
    return to_messages(turns)


class WhatIf(BaseModel):
    """Changes to try on the policy in force; None leaves a parameter as it is."""

    model_config = ConfigDict(frozen=True)

    beta: float | None = Field(default=None, ge=0.0, le=100.0)
    prior: dict[UserType, float] | None = None
    category: str | None = None
    severity: float | None = Field(default=None, ge=0.0, le=1.0)

    @property
    def empty(self) -> bool:
        return (self.beta is None and self.prior is None
                and (self.category is None or self.severity is None))

    def apply(self, policy: Policy) -> Policy:
        """`policy` with these changes, validated like a policy file (`InputError` if not)."""
        data = policy.model_dump(mode="json")
        data["name"] = f"{policy.name}+what-if"
        if self.beta is not None:
            data["game"]["beta"] = self.beta
        if self.prior is not None:
            total = sum(self.prior.values())
            if total <= 0 or any(v <= 0 for v in self.prior.values()):
                raise InputError("prior: every user type needs a positive weight")
            data["game"]["prior"] = {t: self.prior[t] / total for t in USER_TYPES}
        if self.category is not None and self.severity is not None:
            for c in data["taxonomy"]["categories"]:
                if c["id"] == self.category:
                    c["severity"] = self.severity
                    break
            else:
                raise InputError(f"no category {self.category!r} in {policy.label}")
        try:
            return Policy.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            raise InputError(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None


class WhatIfResult(BaseModel):
    before: Decision
    after: Decision
    changes: list[str]
    beta_sweep: list[tuple[float, Strategy]] = Field(
        description="the strategy the changed policy picks at other values of beta")

    @property
    def moved(self) -> bool:
        return self.before.strategy != self.after.strategy


class Timed(BaseModel):
    decision: Decision
    ms: float


class Playground:
    """Decisions, replies and what-ifs for the console, over one engine (and responder)."""

    def __init__(self, engine: Engine, responder: Responder | None, cache_size: int = 128
                 ) -> None:
        self.engine = engine
        self.responder = responder
        self._cache: OrderedDict[str, Assessment] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def policy(self) -> Policy:
        return self.engine.policy

    async def _assessment(self, messages: list[Message]) -> Assessment:
        key = json.dumps([m.model_dump() for m in messages], ensure_ascii=False)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
        assessment = await self.engine.assessor.aassess(messages)
        with self._lock:
            self._cache[key] = assessment
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return assessment

    async def decide(self, messages: list[Message]) -> Timed:
        started = time.perf_counter()
        decision = self.engine.decide_assessed(await self._assessment(messages))
        return Timed(decision=decision, ms=(time.perf_counter() - started) * 1000)

    async def reply(self, messages: list[Message]) -> Reply:
        if self.responder is None:
            raise InputError("this console has no upstream model (start it with --upstream)")
        if messages[-1].role != "user":
            raise InputError("to get a reply, the conversation must end with a user message")
        decision = self.engine.decide_assessed(await self._assessment(messages))
        return await self.responder.arespond_to(decision, messages)

    async def what_if(self, messages: list[Message], change: WhatIf) -> WhatIfResult:
        assessment = await self._assessment(messages)
        before = self.engine.decide_assessed(assessment)
        changed = change.apply(self.policy)
        after = Engine(policy=changed, assessor=self.engine.assessor).decide_assessed(assessment)
        sweep = []
        for beta in BETA_SWEEP:
            at = WhatIf(beta=beta, prior=change.prior, category=change.category,
                        severity=change.severity).apply(self.policy)
            sweep.append((beta, Engine(policy=at, assessor=self.engine.assessor)
                          .decide_assessed(assessment).strategy))
        return WhatIfResult(before=before, after=after, changes=describe(change, self.policy),
                            beta_sweep=sweep)


def describe(change: WhatIf, policy: Policy) -> list[str]:
    """The changes in words, against the policy in force."""
    game = policy.game
    out = []
    if change.beta is not None:
        out.append(f"β (harm weight) {game.beta:g} → {change.beta:g}")
    if change.prior is not None:
        total = sum(change.prior.values())
        out.append("prior " + ", ".join(f"{t} {game.prior[t]:.2f} → {change.prior[t] / total:.2f}"
                                        for t in USER_TYPES))
    if change.category is not None and change.severity is not None:
        c = policy.category(change.category)
        out.append(f"severity of {c.name_en} ({c.name_zh}) {c.severity:g} → {change.severity:g}")
    return out


def what_if_from_form(form: Mapping[str, str], policy: Policy) -> WhatIf:
    """Read the what-if fields; a field equal to the policy's value counts as unchanged."""
    def number(name: str) -> float | None:
        raw = form.get(name, "").strip()
        if not raw:
            return None
        try:
            return float(raw)
        except ValueError:
            raise InputError(f"{name}: {raw!r} is not a number") from None

    beta = number("beta")
    prior_values = {t: number(f"prior_{t}") for t in USER_TYPES}
    prior: dict[UserType, float] | None = None
    if any(v is not None for v in prior_values.values()):
        prior = {t: (v if v is not None else policy.game.prior[t])
                 for t, v in prior_values.items()}
        total = sum(prior.values())
        if total > 0 and all(abs(prior[t] / total - policy.game.prior[t]) < 1e-6
                             for t in USER_TYPES):
            prior = None
    category = form.get("category", "").strip() or None
    severity = number("severity")
    if category is not None and not policy.has_category(category):
        raise InputError(f"no category {category!r} in {policy.label}")
    if category is not None and severity is not None \
            and abs(policy.category(category).severity - severity) < 1e-6:
        category = severity = None
    if beta is not None and abs(beta - policy.game.beta) < 1e-6:
        beta = None
    try:
        return WhatIf(beta=beta, prior=prior, category=category, severity=severity)
    except ValidationError as e:
        err = e.errors()[0]
        raise InputError(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None


def payloads_of(assessment: Assessment | None) -> list[dict[str, Any]]:
    """The hidden payloads de-obfuscation recovered from the conversation, as shown."""
    if assessment is None:
        return []
    return [{"decoder": p.decoder, "turn": p.turn, "read as": p.level or "",
             "confidence": f"{p.confidence:.2f}", "text": p.text}
            for p in assessment.payloads]

