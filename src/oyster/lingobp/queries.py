"""Lingo-BP input: one query per JSONL line.

Accepted lines (the `oyster decide` case format, or the constructive-benchmark format):

    {"id": "q1", "prompt": "..."}
    {"id": "q2", "messages": [{"role": "user", "content": "..."}, ...]}
    {"id": "q3", "query": "...", "level": "R1", "category": "mental_health", "user_role": "...",
     "user_profile": "vulnerable", "language": "en", "kind": "distress"}

Exactly one of `prompt`, `query` or `messages`; the labels are optional and are carried into
the results for reporting (`kind` is the query's situation in the seed set's own terms —
benign, risky_benign, professional, sensitive_need, distress, false_belief, malicious,
attack — and goes into the exported rows for the data card; a `category` that names a
policy category is also what the safety judge checks the reply against). A line without
an id gets `line-N`. Other fields are ignored. Every problem raises `InputError` naming
the file and line, before anything runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from oyster._jsonl import jsonl_objects
from oyster.errors import InputError, field_problem
from oyster.types import Language, Level, Message, UserType, detect_language, to_messages


class Query(BaseModel):
    """One conversation to optimise, with the labels it came with."""

    model_config = ConfigDict(frozen=True)

    id: str
    messages: list[Message]
    language: Language
    level: Level | None = None
    category: str | None = None
    user_role: str | None = None
    user_profile: UserType | None = None
    kind: str | None = None

    @property
    def last_user_text(self) -> str:
        return next(m.content for m in reversed(self.messages) if m.role == "user")

    @classmethod
    def of(cls, conversation: str | list[Message] | list[dict[str, Any]], id: str = "query"
           ) -> Query:
        """A query from a prompt or a message list (raises `InputError` on bad messages)."""
        messages = to_messages(conversation)
        last_user = next(m.content for m in reversed(messages) if m.role == "user")
        return cls(id=id, messages=messages, language=detect_language(last_user))


class _Line(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | int | None = None
    prompt: str | None = None
    query: str | None = None
    messages: list[Any] | None = None
    level: Level | None = None
    category: str | None = None
    user_role: str | None = None
    user_profile: UserType | None = None
    language: Language | None = None
    kind: str | None = None

    @model_validator(mode="after")
    def _one_input(self) -> _Line:
        given = [k for k in ("prompt", "query", "messages") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'prompt', 'query' or 'messages'"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


def parse_query(data: Any, where: str, default_id: str) -> Query:
    if not isinstance(data, dict):
        raise InputError(f"{where}: each line must be a JSON object")
    try:
        line = _Line.model_validate(data)
    except ValidationError as e:
        raise InputError(f"{where}: {field_problem(e, '<line>')}") from None
    try:
        messages = to_messages(line.messages if line.messages is not None
                               else line.prompt or line.query or "")
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    if messages[-1].role != "user":
        raise InputError(f"{where}: the conversation must end with a user message")
    last_user = messages[-1].content
    return Query(id=str(line.id) if line.id is not None else default_id, messages=messages,
                 language=line.language or detect_language(last_user), level=line.level,
                 category=line.category, user_role=line.user_role,
                 user_profile=line.user_profile, kind=line.kind)


def load_queries(path: str | Path) -> list[Query]:
    """Every query in a JSONL file, in file order; ids must be unique."""
    p = Path(path)
    queries: list[Query] = []
    seen: set[str] = set()
    for lineno, data in jsonl_objects(p):
        where = f"{p}:{lineno}"
        query = parse_query(data, where, f"line-{lineno}")
        if query.id in seen:
            raise InputError(f"{where}: duplicate id {query.id!r}")
        seen.add(query.id)
        queries.append(query)
    if not queries:
        raise InputError(f"{p}: no queries")
    return queries
