"""Judges (docs/benchmarks.md): refusal type, user-side satisfaction, developer-side safety.

    from oyster.judges import SafetyJudge, SatisfactionJudge, RefusalClassifier
    safety = SafetyJudge.from_spec("local")                 # offline: embeddings + small heads
    safety = SafetyJudge.from_spec("llm:openai:gpt-4o-mini@http://127.0.0.1:8000/v1")
    v = safety.judge(messages, reply, category_id="mental_health")
    v.label, v.score, v.suggestion

The contract every judge keeps is in `oyster.judges.base`.
"""

from collections.abc import Callable
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
# model behind any backend spec), for each of the three kinds; each imports its implementation
# (`Local<Kind>` in judges/local.py, `LLM<Kind>` in judges/llm.py) when first built.
def _local(kind: str) -> Callable[..., Any]:
    def build(**options: Any) -> Any:
        from oyster.judges import local

        return getattr(local, f"Local{kind}")(**options)

    return build


def _llm(kind: str) -> Callable[..., Any]:
    def build(backend: str, **options: Any) -> Any:
        from oyster.judges import llm

        return getattr(llm, f"LLM{kind}").from_backend_spec(backend, **options)

    return build


for _registry, _kind in ((REFUSAL_CLASSIFIERS, "RefusalClassifier"),
                         (SATISFACTION_JUDGES, "SatisfactionJudge"),
                         (SAFETY_JUDGES, "SafetyJudge")):
    _registry.register("local")(_local(_kind))
    _registry.register("llm:BACKEND")(_llm(_kind))
del _registry, _kind
