"""The policy (docs/replies.md, README "Policy"): the taxonomy of risk categories with their
guidelines, user types, strategies, game parameters, reply texts and serving settings, as one
validated YAML file; the packaged defaults are `default_policy.yaml` and
`default_replies.yaml`.

    from oyster.policy import load_policy
    policy = load_policy("my_policy.yaml")      # merged over the defaults, validated
    policy.category("mental_health").guidelines
"""

from oyster.policy.policy import (
    DEFAULT_POLICY_FILE,
    DEFAULT_REPLIES_FILE,
    NONE_CATEGORY,
    AuditSettings,
    BehaviourModel,
    BeliefModel,
    Category,
    ChainTemplates,
    FalsePremise,
    GameParams,
    ModerationSettings,
    Policy,
    RequestLimits,
    Resources,
    ServeSettings,
    StrategySpec,
    Strictness,
    Taxonomy,
    UserTypeSpec,
    default_policy,
    default_reply_texts,
    load_policy,
    policy_from_mapping,
    policy_from_text,
)
from oyster.policy.replies import CrisisResource, ReplyTexts

__all__ = [
    "DEFAULT_POLICY_FILE",
    "DEFAULT_REPLIES_FILE",
    "NONE_CATEGORY",
    "AuditSettings",
    "BehaviourModel",
    "BeliefModel",
    "Category",
    "ChainTemplates",
    "CrisisResource",
    "FalsePremise",
    "GameParams",
    "ModerationSettings",
    "Policy",
    "ReplyTexts",
    "RequestLimits",
    "Resources",
    "ServeSettings",
    "StrategySpec",
    "Strictness",
    "Taxonomy",
    "UserTypeSpec",
    "default_policy",
    "default_reply_texts",
    "load_policy",
    "policy_from_mapping",
    "policy_from_text",
]
