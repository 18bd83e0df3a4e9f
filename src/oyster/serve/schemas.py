"""The wire format: the part of the OpenAI chat API the proxy speaks, plus the `oyster`
object every completion carries."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from oyster.backends.base import GenerationParams
from oyster.decision import Decision
from oyster.serve.audit import Outcome
from oyster.serve.state import StateHealth
from oyster.types import Message


class ChatCompletionRequest(BaseModel):
    """An OpenAI chat completion request. Fields the proxy does not use (tools, logprobs,
    penalties, ...) are accepted and ignored, as OpenAI-compatible servers commonly do; the
    fields it uses are typed strictly (`"stream": "yes"` is an error, not `true`)."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(default="", max_length=256)
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, gt=0, le=32_768)
    max_completion_tokens: int | None = Field(default=None, gt=0, le=32_768)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: Annotated[str, Field(max_length=200)] | Annotated[
        list[Annotated[str, Field(max_length=200)]], Field(max_length=4)] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
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
    model_config = ConfigDict(extra="forbid", strict=True)

    messages: list[dict[str, Any]] = Field(min_length=1)


class VerificationSummary(BaseModel):
    """The verifier's verdict on what the client received; None fields: nothing generated."""

    passed: bool | None = None
    problems: list[str] = Field(default_factory=list)


class OysterInfo(BaseModel):
    """The decision behind a completion: in its `oyster` field for keys with the `inspect`
    scope, and in the audit log."""

    request_id: str
    decision: Decision = Field(description="the decision record (docs/decisions.md)")
    outcome: Outcome
    verification: VerificationSummary = VerificationSummary()
    fallback_used: bool = False
    upstream_error: str | None = Field(default=None, description="in the audit log: the "
                                       "upstream's error; sent to clients: its kind only")


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
    usage: Usage
    oyster: OysterInfo | None = None


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
    """`status` for anyone; the rest for keys with the `admin` scope (or when auth is off).
    `upstream` names the backend kind and model, never its address."""

    status: Literal["ok"] = "ok"
    policy: str | None = None
    assessor: str | None = None
    upstream: str | None = None
    auth: bool | None = None
    fail_mode: Literal["closed", "open"] | None = None
    audit: Literal["sqlite", "postgresql"] | None = None
    state: StateHealth | None = Field(default=None, description="shared state (rate limits, "
                                      "key revocations): whether it answers, and what the "
                                      "proxy does if not")


class Readiness(BaseModel):
    """`/readyz`: 200 when the audit log, the key store and (in fail mode closed) the shared
    state answer; else 503 with what does not."""

    ready: bool
    problems: dict[str, str] = Field(default_factory=dict)
