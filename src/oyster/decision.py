"""The decision record (docs/decisions.md): what every decision returns."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from oyster.assess.base import Assessment, CategoryScore, PayloadFinding
from oyster.chain.build import Chain
from oyster.types import Form, Language, Level, Strategy, UserType


class Decision(BaseModel):
    """One turn's decision: the risk, who is probably asking, what to do, and why."""

    model_config = ConfigDict(frozen=True)

    id: str | None = None
    level: Level
    categories: list[CategoryScore]
    form: Form
    aggressive: bool
    attacks: list[str]
    user_type: dict[UserType, float]
    strategy: Strategy
    utilities: dict[Strategy, float]
    chain: Chain
    policy: str
    language: Language = "en"
    why: str = Field(default="", description="one line explaining the choice")
    notes: list[str] = Field(default_factory=list, description="what the engine did not read "
                             "(image parts, tool calls) and where the assessor was unsure")
    payloads: list[PayloadFinding] = Field(
        default_factory=list, description="hidden payloads de-obfuscation recovered and judged")
    assessment: Assessment | None = Field(default=None, exclude=True)

    def record(self) -> dict[str, object]:
        """The JSON-ready record."""
        return self.model_dump(mode="json")
