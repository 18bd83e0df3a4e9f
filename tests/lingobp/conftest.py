"""Fixtures for the Lingo-BP tests.

- `CannedBackend` (from canned_run.py): a real `ChatBackend` subclass with canned text.
- Scripted judges: real `SatisfactionJudge`/`SafetyJudge`/`RefusalClassifier` subclasses
  that return the verdicts a test lists, round by round. The loop's branches (early stop,
  best/worst, no-change, clamping) must be driven deterministically; the packaged local
  judges run in the end-to-end and kill-and-resume tests.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from oyster.backends.base import ChatBackend, Completion, GenerationParams
from oyster.engine import Engine
from oyster.judges.base import (
    SATISFACTION_ITEMS,
    RefusalClassifier,
    RefusalVerdict,
    SafetyJudge,
    SafetyVerdict,
    SatisfactionJudge,
    SatisfactionVerdict,
)
from oyster.types import Message

HERE = Path(__file__).resolve().parent


def _load_canned() -> Any:
    spec = importlib.util.spec_from_file_location("lingobp_canned_run", HERE / "canned_run.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


canned_run = _load_canned()


def satisfaction_verdict(score: int | None) -> SatisfactionVerdict:
    """A verdict whose five items sum to `score` (−5..5); None: undetermined."""
    if score is None:
        return SatisfactionVerdict.undetermined("scripted", "scripted undetermined")
    items: dict[Any, Any] = {}
    left = score
    for item in SATISFACTION_ITEMS:
        step = max(-1, min(1, left))
        items[item] = step
        left -= step
    return SatisfactionVerdict(judge="scripted", items=items)


class ScriptedSatisfaction(SatisfactionJudge):
    """Returns the verdicts given, one per call; the last one repeats."""

    def __init__(self, verdicts: Sequence[SatisfactionVerdict]) -> None:
        self.verdicts = list(verdicts)
        self.calls = 0

    def judge(self, query_messages: Any, reply: str) -> SatisfactionVerdict:
        self.calls += 1
        return self.verdicts[min(self.calls, len(self.verdicts)) - 1]


class ScriptedSafety(SafetyJudge):
    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.calls: list[str | None] = []

    def judge(self, query_messages: Any, reply: str, category_id: str | None = None,
              guidelines: Sequence[str] | None = None) -> SafetyVerdict:
        self.calls.append(category_id)
        label = self.labels[min(len(self.calls), len(self.labels)) - 1]
        return SafetyVerdict(judge="scripted", label=label,  # type: ignore[arg-type]
                             suggestion="scripted suggestion")


class ScriptedRefusal(RefusalClassifier):
    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.calls = 0

    def classify(self, query: Any, reply: str) -> RefusalVerdict:
        self.calls += 1
        label = self.labels[min(self.calls, len(self.labels)) - 1]
        return RefusalVerdict(judge="scripted", label=label)  # type: ignore[arg-type]


class ScriptedBackend(ChatBackend):
    """Answers with the given texts in order (an exception in the list is raised instead);
    stands in for a model asked for JSON, which the embedded model cannot be made to write
    on cue. Records every prompt."""

    kind = "scripted"

    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)
        self.prompts: list[list[Message]] = []

    @property
    def spec(self) -> str:
        return "scripted"

    def complete(self, messages: Sequence[Message], params: GenerationParams | None = None
                 ) -> Completion:
        self.prompts.append(list(messages))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return Completion(text=answer, model="scripted")


@pytest.fixture
def scripted() -> type[ScriptedBackend]:
    return ScriptedBackend


class FixedDecisionEngine(Engine):
    """The real engine's policy and assessor, but `decide` returns a given decision: the
    loop tests need a chosen strategy and level, which the assessor must not decide."""

    def __init__(self, engine: Engine, decision: Any) -> None:
        self.policy, self.assessor = engine.policy, engine.assessor
        self.decision = decision
        self.decide_calls = 0

    def decide(self, conversation: Any, id: str | None = None) -> Any:
        self.decide_calls += 1
        return self.decision.model_copy(update={"id": id})

    async def adecide(self, conversation: Any, id: str | None = None) -> Any:
        return self.decide(conversation, id)


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine()


@pytest.fixture
def canned() -> type:
    return canned_run.CannedBackend


@pytest.fixture
def make_lingo(engine: Any) -> Callable[..., Any]:
    """`make_lingo(satisfaction=[scores], safety=[labels], refusal=[labels], **LingoBP kw)`."""
    from oyster.lingobp import LingoBP
    from oyster.respond import Responder

    def make(satisfaction: Sequence[int | None] = (5,), safety: Sequence[str] = ("safe",),
             refusal: Sequence[str] = ("full_compliance",), backend: Any = None,
             decision: Any = None, **kw: Any) -> Any:
        chooser = FixedDecisionEngine(engine, decision) if decision is not None else engine
        responder = Responder(chooser, backend or canned_run.CannedBackend())
        return LingoBP(responder,
                       ScriptedSatisfaction([satisfaction_verdict(s) for s in satisfaction]),
                       ScriptedSafety(safety), ScriptedRefusal(refusal), **kw)

    return make


@pytest.fixture
def decision(policy: Any) -> Callable[..., Any]:
    """A decision built by hand (not by the assessor, whose output these tests must not
    depend on): `decision(strategy, level=, categories=, user_type=, attacks=)`."""
    from oyster.assess.base import CategoryScore
    from oyster.chain import Chain
    from oyster.chain.build import guideline_points, risk_intent_text
    from oyster.decision import Decision
    from oyster.types import STRATEGIES, USER_TYPES

    def make(strategy: Any = "guide", level: Any = "R1",
             categories: Sequence[str] = ("mental_health",), user_type: Any = "vulnerable",
             attacks: Sequence[str] = (), language: Any = "en") -> Any:
        spec = policy.strategies[strategy]
        risky = [CategoryScore(id=c, name=policy.category(c).name_en, score=0.9 - 0.1 * i)
                 for i, c in enumerate(categories)]
        if level == "R0":
            chain = Chain(user_needs=policy.user_types["benign"].needs,
                          usefulness_strategies=list(spec.usefulness_strategies))
        else:
            chain = Chain(user_needs=policy.user_types[user_type].needs,
                          risk_intent=risk_intent_text(level, risky, user_type, attacks, policy),
                          guidelines=guideline_points(risky, policy)[:3],
                          safety_strategies=list(spec.safety_strategies),
                          usefulness_strategies=list(spec.usefulness_strategies))
        return Decision(level=level, categories=risky, form="question", aggressive=bool(attacks),
                        attacks=sorted(attacks),
                        user_type={t: (0.91 if t == user_type else 0.03) for t in USER_TYPES},
                        strategy=strategy, utilities=dict.fromkeys(STRATEGIES, 0.0),
                        chain=chain, policy=policy.label, language=language)

    return make


@pytest.fixture
def verdicts() -> Callable[..., Any]:
    """`verdicts(satisfaction=score or items dict, safety=label, refusal=label)` → Feedback."""
    from oyster.lingobp import Feedback

    def make(satisfaction: int | dict[str, int] = 5, safety: str = "safe",
             refusal: str = "full_compliance") -> Any:
        sat = (SatisfactionVerdict(judge="t", items=satisfaction)  # type: ignore[arg-type]
               if isinstance(satisfaction, dict) else satisfaction_verdict(satisfaction))
        return Feedback(satisfaction=sat,
                        safety=SafetyVerdict(judge="t", label=safety),  # type: ignore[arg-type]
                        refusal=RefusalVerdict(judge="t", label=refusal))  # type: ignore[arg-type]

    return make
