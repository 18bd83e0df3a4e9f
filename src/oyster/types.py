"""The shared vocabulary of Oyster: levels, forms, user types, strategies, reactions, chat
messages, and the reader that turns a prompt or OpenAI-style messages into `Message`s. Every
other module speaks in these names."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oyster.errors import InputError

Level = Literal["R0", "R1", "R2"]
Form = Literal["statement", "question", "instruction"]
UserType = Literal["benign", "vulnerable", "misinformed", "malicious"]
Strategy = Literal["answer", "answer_safely", "correct", "guide", "refuse"]
Reaction = Literal["satisfied", "follows_guidance", "retries", "escalates", "leaves_for_unsafe_source"]
Role = Literal["system", "user", "assistant"]
Language = Literal["en", "zh"]
# what the verifier finds wrong with a reply (respond/verify.py); regenerate.yaml has a rule
# for each
Problem = Literal["hazard_leak", "chain_leak", "meta_talk", "off_topic", "empty_apology",
                  "unknown_contact",
                  "refusal_mismatch", "payload_echo", "missing_resource", "missing_correction",
                  "wrong_language", "empty_reply", "repetition"]

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


Conversation = Sequence[Message | dict[str, Any]] | str

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
          "tool": "tool", "function": "tool"}
TOOL_RESULT_MARK = "[tool result] "
_SURROGATE = re.compile("[\ud800-\udfff]")


class ConversationText(BaseModel):
    """A conversation as the engine reads it: its messages, and what was left out."""

    model_config = ConfigDict(frozen=True)

    messages: list[Message]
    ignored: list[str] = Field(default_factory=list,
                               description="what was not read, e.g. image parts, tool calls")


def _clean(text: str, where: str, notes: list[str]) -> str:
    """`text` without lone surrogates (they cannot be written as UTF-8)."""
    if _SURROGATE.search(text):
        notes.append(f"{where}: lone surrogates replaced by U+FFFD")
        return _SURROGATE.sub("\ufffd", text)
    return text


def _content_text(content: Any, i: int, role: str, notes: list[str]) -> str:
    """The readable text of one message's `content`: a string, OpenAI content parts (text
    kept, other kinds counted as ignored), or null (an assistant's tool call, a tool)."""
    if isinstance(content, str):
        return content
    if content is None:
        if role in ("assistant", "tool", "system"):
            return ""
        raise InputError(f"messages[{i}].content: a {role} message needs text content")
    if not isinstance(content, list):
        raise InputError(f"messages[{i}].content: must be a string, a list of content parts "
                         f"or null, not {type(content).__name__}")
    texts: list[str] = []
    skipped: dict[str, int] = {}
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise InputError(f"messages[{i}].content[{j}]: a content part must be an object")
        kind = part.get("type", "text")
        field = {"text": "text", "refusal": "refusal"}.get(kind) if isinstance(kind, str) else None
        if field is None:
            name = kind if isinstance(kind, str) else "?"
            skipped[name[:40]] = skipped.get(name[:40], 0) + 1
            continue
        value = part.get(field)
        if not isinstance(value, str):
            raise InputError(f"messages[{i}].content[{j}].{field}: must be a string")
        texts.append(value)
    notes.extend(f"messages[{i}]: {n} {kind} part(s) not read" for kind, n in skipped.items())
    return "".join(texts)


def read_conversation(conversation: Conversation) -> ConversationText:
    """Read a prompt string or OpenAI-style messages; raise `InputError` on anything else.

    `developer` is read as `system`; a `tool` (or legacy `function`) result is read as an
    input turn the reply must answer, marked `[tool result]`, so it is assessed like what a
    user says (tool output is where indirect prompt injection arrives). An assistant's tool
    calls, and content parts that are not text (images, audio, files), are not read: the
    `ignored` list says so."""
    if isinstance(conversation, str):
        conversation = [{"role": "user", "content": conversation}]
    if not isinstance(conversation, Sequence) or isinstance(conversation, bytes | bytearray) \
            or not conversation:
        raise InputError("messages must be a non-empty list of {role, content} objects")
    out: list[Message] = []
    notes: list[str] = []
    for i, m in enumerate(conversation):
        if isinstance(m, Message):
            out.append(m)
            continue
        if not isinstance(m, dict):
            raise InputError(f"messages[{i}] must be an object with 'role' and 'content'")
        raw_role = m.get("role")
        role = _ROLES.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            shown = repr(raw_role)[:60]
            raise InputError(f"messages[{i}].role: {shown} is not one of "
                             f"{', '.join(_ROLES)}")
        if "content" not in m and not (role == "assistant" and m.get("tool_calls")):
            raise InputError(f"messages[{i}].content: missing")
        text = _clean(_content_text(m.get("content"), i, role, notes), f"messages[{i}]", notes)
        if role == "assistant" and m.get("tool_calls"):
            calls = m["tool_calls"]
            n = len(calls) if isinstance(calls, list) else 1
            notes.append(f"messages[{i}]: {n} tool call(s) not read")
        if role == "tool":
            role, text = "user", TOOL_RESULT_MARK + text
        try:
            out.append(Message(role=role, content=text))  # type: ignore[arg-type]
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise InputError(f"messages[{i}].{field}: {err['msg']}") from None
    if not any(m.role == "user" and m.content.strip() for m in out):
        raise InputError("the conversation has no non-empty user message")
    return ConversationText(messages=out, ignored=notes)


def to_messages(conversation: Conversation) -> list[Message]:
    """The messages of `read_conversation`, without the notes."""
    return read_conversation(conversation).messages
