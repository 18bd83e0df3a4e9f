"""The shared vocabulary of Oyster (design.md §2): levels, forms, user types, strategies,
reactions and chat messages. Every other module speaks in these names."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

Level = Literal["R0", "R1", "R2"]
Form = Literal["statement", "question", "instruction"]
UserType = Literal["benign", "vulnerable", "misinformed", "malicious"]
Strategy = Literal["answer", "answer_safely", "correct", "guide", "refuse"]
Reaction = Literal["satisfied", "follows_guidance", "retries", "escalates", "leaves_for_unsafe_source"]
Role = Literal["system", "user", "assistant"]
Language = Literal["en", "zh"]

LEVELS: tuple[Level, ...] = get_args(Level)
FORMS: tuple[Form, ...] = get_args(Form)
USER_TYPES: tuple[UserType, ...] = get_args(UserType)
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
REACTIONS: tuple[Reaction, ...] = get_args(Reaction)
ATTACK_TECHNIQUES: tuple[str, ...] = (
    "role_play",
    "instruction_override",
    "encoding",
    "shuffle",
    "char_split",
    "ascii_art",
    "code_completion",
    "payload_split",
    "multi_turn_escalation",
    "contradictory",
    "opposing",
    "long_text",
    "acrostic",
)


class Message(BaseModel):
    """One chat message, OpenAI-style."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    role: Role
    content: str = Field(max_length=200_000)


def detect_language(text: str) -> Language:
    """`zh` when CJK characters make up a real share of the letters, else `en`."""
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    letters = sum(1 for ch in text if ch.isalpha())
    return "zh" if letters and cjk / letters >= 0.2 else "en"
