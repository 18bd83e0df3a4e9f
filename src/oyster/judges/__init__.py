"""Judges (design.md §6): refusal type, user-side satisfaction, developer-side safety.

    from oyster.judges import SafetyJudge, SatisfactionJudge, RefusalClassifier
    safety = SafetyJudge.from_spec("local")                 # offline: embeddings + small heads
    safety = SafetyJudge.from_spec("llm:openai:gpt-4o-mini@http://127.0.0.1:8000/v1")
    v = safety.judge(messages, reply, category_id="mental_health")
    v.label, v.score, v.suggestion

The contract every judge keeps is in `oyster.judges.base`.
"""

from oyster.judges.base import (
    REFUSAL_TYPES,
    SATISFACTION_ITEMS,
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
    "REFUSAL_TYPES",
    "SATISFACTION_ITEMS",
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
