"""The wire format: the part of the OpenAI chat API the proxy speaks, plus the `oyster`
object every completion carries."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from oyster.backends.base import GenerationParams
from oyster.decision import Decision
from oyster.serve.audit import Outcome
from oyster.serve.state import StateHealth
from oyster.types import Message


class ChatCompletionRequest(BaseModel):
    """An OpenAI chat completion request. Fields the proxy does not use (tools, logprobs,
    penalties, ...) are accepted and ignored, as OpenAI-compatible servers commonly do."""

    model_config = ConfigDict(extra="allow")

    model: str = ""
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: Literal[1] = 1

    def generation_params(self, base: GenerationParams, timeout: float) -> GenerationParams:
        """`base` with what this request sets, and the proxy's upstream timeout."""
        update: dict[str, Any] = {"timeout": timeout}
        max_tokens = self.max_completion_tokens or self.max_tokens
        if max_tokens is not None:
            update["max_tokens"] = max_tokens
        if self.temperature is not None:
            update["temperature"] = self.temperature
        if self.top_p is not None:
            update["top_p"] = self.top_p
        if self.stop is not None:
            update["stop"] = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if self.seed is not None:
            update["seed"] = self.seed
        return GenerationParams.model_validate(base.model_dump() | update)


class DecideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, Any]] = Field(min_length=1)


class VerificationSummary(BaseModel):
    """The verifier's verdict on what the client received; None fields: nothing generated."""

    passed: bool | None = None
    problems: list[str] = Field(default_factory=list)


class OysterInfo(BaseModel):
    """The decision behind a completion, carried in its `oyster` field."""

    request_id: str
    decision: Decision = Field(description="the design.md §3 decision record")
    outcome: Outcome
    verification: VerificationSummary = VerificationSummary()
    fallback_used: bool = False
    upstream_error: str | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str = "stop"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    oyster: OysterInfo


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    oyster: OysterInfo | None = None


class DecideResponse(BaseModel):
    """A decision without generation, for apps that generate themselves: send `messages`
    (the conversation with the steering system message first) to your own model."""

    oyster: OysterInfo
    messages: list[Message]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "oyster"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error shape, so SDKs surface the message."""

    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    policy: str
    assessor: str
    upstream: str | None
    auth: bool
    fail_mode: Literal["closed", "open"]
    audit: Literal["sqlite", "postgresql"]
    state: StateHealth = Field(description="shared state (rate limits, key revocations): "
                               "whether it answers, and what the proxy does if not")


class Readiness(BaseModel):
    """`/readyz`: 200 when the audit log, the key store and (in fail mode closed) the shared
    state answer; else 503 with what does not."""

    ready: bool
    problems: dict[str, str] = Field(default_factory=dict)
