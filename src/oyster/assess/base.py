"""The assessor contract.

An assessor reads a whole conversation and says, for every user turn and for the
conversation as it stands now:
- the risk `level` (R0/R1/R2) with its probabilities,
- `categories`: scored policy categories (multi-label; empty or `none` when no risk),
- the interaction `form` and whether it is `aggressive`,
- `attacks`: attack techniques found (see `oyster.types.ATTACK_TECHNIQUES`),
- per-turn `type_evidence`: a distribution over user types read from that turn alone, and
  whether the turn repeats a risky ask the assistant already declined.

Rules every implementation keeps:
- The current turn is the last user message. The conversation-level fields describe that
  turn in its context: a harmless opener does not hide a harmful later turn, and an old
  risky turn does not re-trigger on a benign new one (payload split across turns and
  escalation are reported as attacks of the current turn).
- Category ids are ids of the policy the assessor was given; scores are in [0, 1].
- An assessor never raises on odd text; it raises `InputError` only when there is no user
  message at all, and `AssessorError` when it cannot run (e.g. missing artefacts).
- `notes` says when the assessor fell back or was unsure; nothing is silently defaulted.
- `payloads` lists what de-obfuscation recovered from the user turns (an assessor that does
  not de-obfuscate leaves it empty). Where a payload was decoded with confidence, the turn
  is judged on the riskier of its readings (as written, as revealed, the payload alone),
  and its technique is reported in `attacks`; a harmless payload stays harmless.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from oyster.errors import InputError
from oyster.policy import Policy
from oyster.types import Form, Language, Level, Message, UserType


class CategoryScore(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    score: float = Field(ge=0.0, le=1.0)


class AttackFinding(BaseModel):
    model_config = ConfigDict(frozen=True)

    technique: str
    turn: int = Field(description="index of the message in the conversation")
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: str = Field(default="", description="a short excerpt or reason")


class PayloadFinding(BaseModel):
    """A payload recovered from a user turn by de-obfuscation (`oyster.assess.deobfuscate`)
    and judged as text alongside the turn as written."""

    model_config = ConfigDict(frozen=True)

    turn: int = Field(description="index of the message in the conversation")
    technique: str = Field(description="attack technique, a name of ATTACK_TECHNIQUES")
    decoder: str = Field(description="the decoder (or chain, 'base64>reversed') that found it")
    confidence: float = Field(ge=0.0, le=1.0, description="that the technique is used and "
                              "this is what it hides (not that it is harmful)")
    text: str = Field(description="the recovered payload (an excerpt, at most 300 characters)")
    evidence: str = ""
    level: Level | None = Field(default=None, description="the level the payload was read at")


class TurnAssessment(BaseModel):
    """One user turn, judged on its own (plus what it repeats from earlier turns)."""

    model_config = ConfigDict(frozen=True)

    turn: int = Field(description="index of the message in the conversation")
    language: Language
    level: Level
    level_probs: dict[Level, float]
    categories: list[CategoryScore]
    form: Form
    attacks: list[AttackFinding] = Field(default_factory=list)
    type_evidence: dict[UserType, float]
    repeats_refused_ask: bool = False


class Assessment(BaseModel):
    """The conversation as it stands at its last user turn."""

    model_config = ConfigDict(frozen=True)

    assessor: str
    language: Language
    level: Level
    level_probs: dict[Level, float]
    categories: list[CategoryScore]
    form: Form
    aggressive: bool
    attacks: list[AttackFinding]
    turns: list[TurnAssessment]
    confidence: float = Field(ge=0.0, le=1.0, description="how sure the assessor is of `level`")
    notes: list[str] = Field(default_factory=list)
    payloads: list[PayloadFinding] = Field(
        default_factory=list, description="hidden payloads recovered from the user turns")

    @property
    def top_category(self) -> CategoryScore | None:
        return max(self.categories, key=lambda c: c.score) if self.categories else None


class Assessor(ABC):
    """Base class; subclasses implement `assess`. `aassess` runs it off the event loop."""

    name: ClassVar[str] = "base"

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    @abstractmethod
    def assess(self, messages: Sequence[Message]) -> Assessment:
        """Assess the conversation; see the module docstring for the contract."""

    async def aassess(self, messages: Sequence[Message]) -> Assessment:
        return await asyncio.to_thread(self.assess, messages)

    def assess_many(self, conversations: Sequence[Sequence[Message]]) -> list[Assessment]:
        """Assess several conversations; model-backed assessors override this to batch."""
        return [self.assess(m) for m in conversations]

    def warm_up(self) -> None:
        """Load every model and table this assessor may use, now, so that the first
        message assessed does not pay for it (`Engine.warm_up`). Default: nothing to load."""
        return None


RECENT_USER_TURNS = 3
# what `warm_up` reads: an ordinary question (its embedding stays in the cache, harmlessly)
WARM_UP_TEXT = "How do I change the password of my home Wi-Fi router?"


def recent_user_text(messages: Sequence[Message], turns: int = RECENT_USER_TURNS) -> str:
    """The last `turns` user messages joined into one text: what the conversation asks
    when read together (a plan spread over turns, or the frame that explains the last one).
    Training data for conversations is built with the same function."""
    return "\n".join([m.content for m in messages if m.role == "user"][-turns:])


# A message this long is mostly material (a pasted document, a story, notes, a transcript)
# with the sender's request at its end (#18)
LONG_MESSAGE_CHARS = 600
_REQUEST_CHARS = (20, 300)  # a final request is at least / at most this many characters
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


def final_request(text: str) -> str | None:
    """The request at the end of a long message: its last line (with the lines before it
    when that line is shorter than a request), or the last sentences of an overlong last
    line. None for a message shorter than `LONG_MESSAGE_CHARS`."""
    if len(text) < LONG_MESSAGE_CHARS:
        return None
    shortest, longest = _REQUEST_CHARS
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    tail = ""
    while lines and len(tail) < shortest:
        tail = f"{lines.pop()}\n{tail}".strip()
    if len(tail) > longest:
        sentences = [s for s in _SENTENCE_END.split(tail) if s.strip()]
        tail = ""
        while sentences and len(tail) < shortest:
            tail = f"{sentences.pop()} {tail}".strip()
        if len(tail) > longest:
            tail = tail[-longest:]
    return tail if tail and tail != text.strip() else None


def user_turn_indices(messages: Sequence[Message]) -> list[int]:
    """Indices of the user messages; raises `InputError` if there are none."""
    idx = [i for i, m in enumerate(messages) if m.role == "user"]
    if not idx:
        raise InputError("the conversation has no user message to assess")
    return idx
