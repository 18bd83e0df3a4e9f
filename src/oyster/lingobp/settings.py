"""Lingo-BP settings (`data/lingobp.yaml`) and prompts (`data/prompts.yaml`), validated on load."""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oyster._packaged import packaged_model
from oyster.judges.base import RefusalType, SatisfactionItem
from oyster.types import LEVELS, Level, Strategy, UserType

StrategySet = Literal["safety", "usefulness"]
ActionKind = Literal["add", "replace", "remove"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolPhrase(_Strict):
    text: str = Field(min_length=3, max_length=160)
    strategy: Strategy | None = Field(default=None, description="the reply contract it belongs to")
    for_: list[Strategy] | None = Field(default=None, alias="for",
                                        description="only for chains under these strategies")

    def fits(self, strategy: Strategy) -> bool:
        return self.for_ is None or strategy in self.for_


class Condition(_Strict):
    """All given fields must hold; a field left out does not constrain."""

    safety_low: bool | None = None
    satisfaction_low: bool | None = None
    refusal_in: list[RefusalType] | None = None
    items_at_most: dict[SatisfactionItem, int] = Field(default_factory=dict)
    strategy_in: list[Strategy] | None = None
    level_in: list[Level] | None = None
    dominant_type_in: list[UserType] | None = None


class EditRule(_Strict):
    name: str
    why: str
    when: Condition
    set: StrategySet
    action: ActionKind
    pool: str | None = None
    target: str | None = None
    exclusive: bool = False

    @model_validator(mode="after")
    def _arguments(self) -> EditRule:
        if self.action in ("add", "replace") and not self.pool:
            raise ValueError(f"rule {self.name}: '{self.action}' needs a 'pool'")
        if self.action in ("replace", "remove") and not self.target:
            raise ValueError(f"rule {self.name}: '{self.action}' needs a 'target' pool")
        return self


class ReasoningFormat(_Strict):
    """How a chain is written as text in exported training data."""

    user_needs: str
    risk_intent: str
    guidelines: str
    safety_strategies: str
    usefulness_strategies: str
    item: str


class LingoSettings(_Strict):
    version: int
    score_beta: float = Field(ge=0.0)
    satisfaction_low: float = Field(ge=-1.0, le=1.0)
    safety_low: float = Field(ge=0.0, le=1.0)
    max_items: int = Field(ge=1, le=12)
    max_guidelines: int = Field(ge=1, le=12)
    min_reading_posterior: float = Field(ge=0.0, le=1.0)
    relabel_allowed: dict[Level, list[Strategy]]
    stopwords: str = Field(description="space-separated")
    pools: dict[str, list[PoolPhrase]]
    rules: list[EditRule]
    reasoning: ReasoningFormat

    @model_validator(mode="after")
    def _consistent(self) -> LingoSettings:
        if set(self.relabel_allowed) != set(LEVELS):
            raise ValueError(f"relabel_allowed: needs exactly the levels {list(LEVELS)}")
        for rule in self.rules:
            for pool in (rule.pool, rule.target):
                if pool is not None and pool not in self.pools:
                    raise ValueError(f"rule {rule.name}: unknown pool {pool!r}")
        return self


    @property
    def stopword_set(self) -> frozenset[str]:
        return frozenset(self.stopwords.split())


class PromptPair(_Strict):
    system: str
    user: str


class FeedbackLines(_Strict):
    satisfaction: str
    safety: str
    refusal: str
    undetermined: str


class Prompts(_Strict):
    version: int
    retry: str
    feedback: FeedbackLines
    editor: PromptPair
    propagator: PromptPair


@cache
def settings() -> LingoSettings:
    return packaged_model("oyster.lingobp", "data/lingobp.yaml", LingoSettings)


@cache
def prompts() -> Prompts:
    return packaged_model("oyster.lingobp", "data/prompts.yaml", Prompts)
