"""What to change for the one regeneration after a failed verification (`regenerate.yaml`):
which strategy to use and what to add to the instructions."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oyster._packaged import packaged_model
from oyster.decision import Decision
from oyster.types import STRATEGIES, Problem, Strategy


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProblemRule(_Strict):
    tightens: bool = Field(description="regenerate under the stricter strategy")
    include_resources: bool = False
    correction: str = Field(description="added to the instructions; {language} is filled in")
    by_strategy: dict[Strategy, str] = Field(default_factory=dict,
                                             description="corrections for particular strategies")


class RegenerationRules(_Strict):
    stricter: dict[Strategy, Strategy]
    corrections_heading: str
    language_names: dict[str, str]
    problems: dict[Problem, ProblemRule]

    @model_validator(mode="after")
    def _complete(self) -> RegenerationRules:
        missing = [s for s in STRATEGIES if s not in self.stricter]
        if missing:
            raise ValueError(f"stricter: no entry for {missing}")
        unruled = [p for p in get_args(Problem) if p not in self.problems]
        if unruled:
            raise ValueError(f"problems: no rule for {unruled}")
        return self


@cache
def regeneration_rules() -> RegenerationRules:
    return packaged_model("oyster.respond", "regenerate.yaml", RegenerationRules)


class RetryPlan(_Strict):
    """How the second attempt differs from the first."""

    strategy: Strategy
    corrections: list[str]
    include_resources: bool


def plan_retry(decision: Decision, problems: Sequence[Problem]) -> RetryPlan:
    """The strategy and corrections for regenerating a reply whose verification found
    `problems`."""
    rules = regeneration_rules()
    found = [rules.problems[p] for p in problems if p in rules.problems]
    strategy = (rules.stricter[decision.strategy] if any(r.tightens for r in found)
                else decision.strategy)
    language = rules.language_names.get(decision.language, decision.language)
    corrections = [r.by_strategy.get(strategy, r.correction).format(language=language)
                   for r in found]
    return RetryPlan(strategy=strategy, corrections=list(dict.fromkeys(corrections)),
                     include_resources=any(r.include_resources for r in found))
