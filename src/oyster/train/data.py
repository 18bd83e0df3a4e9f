"""Reading and validating training files (pure Python; no torch).

Two JSONL formats, one object per line (blank lines are skipped):

- SFT: `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`.
  The conversation must end with an assistant message; the loss is computed on that last
  reply only (everything before it is the prompt).
- Preference (ORPO/DPO, TRL's conversational format):
  `{"prompt": [messages ending with a user turn], "chosen": [{"role": "assistant", ...}],
  "rejected": [{"role": "assistant", ...}]}`.

Every problem raises `InputError` naming the file and the line number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from oyster._jsonl import jsonl_objects
from oyster.errors import InputError
from oyster.types import Message

_ROLES = ("system", "user", "assistant")
_MAX_CONTENT = 200_000


class SFTExample(BaseModel):
    """One supervised example: `prompt` (context) and the assistant `completion` to learn."""

    model_config = ConfigDict(frozen=True)

    prompt: tuple[Message, ...]
    completion: Message

    def as_record(self) -> dict[str, Any]:
        """TRL's conversational prompt-completion record."""
        return {
            "prompt": [m.model_dump() for m in self.prompt],
            "completion": [self.completion.model_dump()],
        }


class PreferenceExample(BaseModel):
    """One preference pair: the same `prompt`, a `chosen` and a `rejected` assistant reply."""

    model_config = ConfigDict(frozen=True)

    prompt: tuple[Message, ...]
    chosen: tuple[Message, ...]
    rejected: tuple[Message, ...]

    def as_record(self) -> dict[str, Any]:
        """TRL's conversational preference record."""
        return {
            "prompt": [m.model_dump() for m in self.prompt],
            "chosen": [m.model_dump() for m in self.chosen],
            "rejected": [m.model_dump() for m in self.rejected],
        }


SFT_FORMAT = '{"messages": [{"role": "user", "content": ...}, {"role": "assistant", ...}]}'
PREF_FORMAT = ('{"prompt": [{"role": "user", "content": ...}], '
               '"chosen": [{"role": "assistant", ...}], "rejected": [{"role": "assistant", ...}]}')


def _where(path: Path, lineno: int) -> str:
    return f"{path}:{lineno}"


def _read_jsonl(path: str | Path, expected: str) -> list[tuple[int, dict[str, Any]]]:
    p = Path(path)
    rows = list(jsonl_objects(p, like=expected))
    if not rows:
        raise InputError(f"{p}: no examples (empty file); expected JSONL lines like {expected}")
    return rows


def _messages(value: Any, where: str, field: str) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}: `{field}` must be a non-empty list of messages")
    out: list[Message] = []
    for i, m in enumerate(value):
        at = f"{where}: `{field}[{i}]`"
        if not isinstance(m, dict):
            raise InputError(f"{at} must be an object with `role` and `content`")
        role, content = m.get("role"), m.get("content")
        if role not in _ROLES:
            raise InputError(f"{at}: role {role!r} is not one of {', '.join(_ROLES)}")
        if not isinstance(content, str):
            raise InputError(f"{at}: `content` must be a string")
        if not content.strip():
            raise InputError(f"{at}: `content` is empty")
        if len(content) > _MAX_CONTENT:
            raise InputError(f"{at}: `content` is longer than {_MAX_CONTENT} characters")
        if role == "system" and i != 0:
            raise InputError(f"{at}: a system message may only come first")
        out.append(Message(role=role, content=content))
    return tuple(out)


def load_sft(path: str | Path) -> list[SFTExample]:
    """Read and validate an SFT JSONL file; see the module docstring for the format."""
    p = Path(path)
    examples: list[SFTExample] = []
    for lineno, obj in _read_jsonl(p, SFT_FORMAT):
        where = _where(p, lineno)
        if "messages" not in obj:
            keys = ", ".join(sorted(obj)) or "none"
            hint = (" (this looks like preference data: use `train orpo`)"
                    if {"chosen", "rejected"} <= set(obj) else "")
            raise InputError(f"{where}: missing `messages` (keys: {keys}){hint}; "
                             f"expected {SFT_FORMAT}")
        msgs = _messages(obj["messages"], where, "messages")
        if msgs[-1].role != "assistant":
            raise InputError(f"{where}: the last message must be the assistant reply to learn, "
                             f"got role {msgs[-1].role!r}")
        if not any(m.role == "user" for m in msgs[:-1]):
            raise InputError(f"{where}: no user message before the assistant reply")
        examples.append(SFTExample(prompt=msgs[:-1], completion=msgs[-1]))
    return examples


def load_preferences(path: str | Path) -> list[PreferenceExample]:
    """Read and validate a preference JSONL file; see the module docstring for the format."""
    p = Path(path)
    examples: list[PreferenceExample] = []
    for lineno, obj in _read_jsonl(p, PREF_FORMAT):
        where = _where(p, lineno)
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in obj]
        if missing:
            hint = " (this looks like SFT data: use `train sft`)" if "messages" in obj else ""
            raise InputError(f"{where}: missing {', '.join(f'`{k}`' for k in missing)}{hint}; "
                             f"expected {PREF_FORMAT}")
        if isinstance(obj["prompt"], str):
            raise InputError(f"{where}: `prompt` must be a list of messages (conversational "
                             f"format), not a string")
        prompt = _messages(obj["prompt"], where, "prompt")
        if prompt[-1].role != "user":
            raise InputError(f"{where}: `prompt` must end with a user message, got role "
                             f"{prompt[-1].role!r}")
        replies: dict[str, tuple[Message, ...]] = {}
        for key in ("chosen", "rejected"):
            msgs = _messages(obj[key], where, key)
            bad = [m.role for m in msgs if m.role != "assistant"]
            if bad:
                raise InputError(f"{where}: `{key}` may hold only assistant messages, got role "
                                 f"{bad[0]!r}")
            replies[key] = msgs
        if replies["chosen"] == replies["rejected"]:
            raise InputError(f"{where}: `chosen` and `rejected` are identical; a preference "
                             f"pair needs two different replies")
        examples.append(PreferenceExample(prompt=prompt, chosen=replies["chosen"],
                                          rejected=replies["rejected"]))
    return examples
