"""Judges (docs/benchmarks.md): refusal type, user-side satisfaction, developer-side safety.

    from oyster.judges import SafetyJudge, SatisfactionJudge, RefusalClassifier
    safety = SafetyJudge.from_spec("local")                 # offline: embeddings + small heads
    safety = SafetyJudge.from_spec("llm:openai:gpt-4o-mini@http://127.0.0.1:8000/v1")
    v = safety.judge(messages, reply, category_id="mental_health")
    v.label, v.score, v.suggestion

The contract every judge keeps is in `oyster.judges.base`.
"""

from typing import Any

from oyster.judges.base import (
    REFUSAL_CLASSIFIERS,
    REFUSAL_TYPES,
    SAFETY_JUDGES,
    SATISFACTION_ITEMS,
    SATISFACTION_JUDGES,
    RefusalClassifier,
    RefusalType,
    RefusalVerdict,
    SafetyJudge,
    SafetyLabel,
    SafetyVerdict,
    SatisfactionItem,
    SatisfactionJudge,
    SatisfactionVerdict,
    constructive_score,
)

__all__ = [
    "REFUSAL_CLASSIFIERS",
    "REFUSAL_TYPES",
    "SAFETY_JUDGES",
    "SATISFACTION_ITEMS",
    "SATISFACTION_JUDGES",
    "RefusalClassifier",
    "RefusalType",
    "RefusalVerdict",
    "SafetyJudge",
    "SafetyLabel",
    "SafetyVerdict",
    "SatisfactionItem",
    "SatisfactionJudge",
    "SatisfactionVerdict",
    "constructive_score",
]


# The built-in judges: `local` (offline: embeddings and small heads) and `llm:BACKEND` (a chat
# model behind any backend spec); each imports its implementation when first built.
@REFUSAL_CLASSIFIERS.register("local")
def _local_refusal(**options: Any) -> RefusalClassifier:
    from oyster.judges.local import LocalRefusalClassifier

    return LocalRefusalClassifier(**options)


@REFUSAL_CLASSIFIERS.register("llm:BACKEND")
def _llm_refusal(backend: str, **options: Any) -> RefusalClassifier:
    from oyster.judges.llm import LLMRefusalClassifier

    return LLMRefusalClassifier.from_backend_spec(backend, **options)


@SATISFACTION_JUDGES.register("local")
def _local_satisfaction(**options: Any) -> SatisfactionJudge:
    from oyster.judges.local import LocalSatisfactionJudge

    return LocalSatisfactionJudge(**options)


@SATISFACTION_JUDGES.register("llm:BACKEND")
def _llm_satisfaction(backend: str, **options: Any) -> SatisfactionJudge:
    from oyster.judges.llm import LLMSatisfactionJudge

    return LLMSatisfactionJudge.from_backend_spec(backend, **options)


@SAFETY_JUDGES.register("local")
def _local_safety(**options: Any) -> SafetyJudge:
    from oyster.judges.local import LocalSafetyJudge

    return LocalSafetyJudge(**options)


@SAFETY_JUDGES.register("llm:BACKEND")
def _llm_safety(backend: str, **options: Any) -> SafetyJudge:
    from oyster.judges.llm import LLMSafetyJudge

    return LLMSafetyJudge.from_backend_spec(backend, **options)
