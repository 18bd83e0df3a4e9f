"""The guardrail proxy: an OpenAI-compatible chat API in front of any `ChatBackend`, with a
decision for every request.

Routes: `POST /v1/chat/completions` (plain and streamed), `GET /v1/models`,
`POST /v1/decide` (decision only), `GET /healthz` (liveness; details, including what is
degraded, for admin keys), `GET /readyz` (every dependency answers), `GET /metrics`,
`GET /openapi.json`.

Least exposure: a caller gets the reply and the `x-oyster-strategy` header. The decision
behind it (the `oyster` object, level and outcome headers) and `/v1/decide` need a key with
the `inspect` scope; `/metrics` and the detailed `/healthz` and `/readyz` need `admin`;
`/openapi.json` needs a key. With authentication off, every route is open and completions
carry what the policy's `serve.open_scopes` allow (nothing more by default). Upstream
addresses and error texts stay in the logs and the audit log. Failed authentication is
limited per client address (`serve.auth_failures_per_minute`, per replica) and counted.

Stateless: each request's decision is recomputed from its own `messages`. Replicas share
only what they are given: the audit log and key store (SQLite or PostgreSQL) and, with a
`SharedState` on Redis, rate limits and key revocations. Every request to a decision
endpoint gets an audit row (`oyster.serve.ledger`). Build an app with `create_app(...)`;
everything it needs is passed in, nothing is global.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oyster import telemetry
from oyster.backends.base import GenerationParams
from oyster.decision import Decision
from oyster.engine import ConversationText, Engine
from oyster.errors import BackendError, BackendTimeout, InputError, OysterError
from oyster.policy import ServeSettings
from oyster.respond import Reply, Responder, Verifier, fallback_reply, instructions_for
from oyster.respond.fallback import resource_note
from oyster.serve.audit import AuditError, AuditLog, AuditRecord, Endpoint, Outcome
from oyster.serve.errors import ProxyError, install_error_handlers
from oyster.serve.keys import KeyStore, KeyStoreError
from oyster.serve.keys import Scope as KeyScope
from oyster.serve.ledger import RequestLedger, note_decision, note_key
from oyster.serve.limits import RateLimiter
from oyster.serve.metrics import ProxyMetrics
from oyster.serve.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    DecideRequest,
    DecideResponse,
    Delta,
    ErrorBody,
    ErrorDetail,
    Health,
    ModelCard,
    ModelList,
    OysterInfo,
    Readiness,
    Usage,
    VerificationSummary,
)
from oyster.serve.state import LocalState, SharedState, StateUnavailable
from oyster.serve.stream import Recovery, VerifiedStream
from oyster.types import Message as ChatMessage

log = logging.getLogger("oyster.serve")

ROUTES = ("/v1/chat/completions", "/v1/decide", "/v1/models", "/healthz", "/readyz",
          "/metrics", "/openapi.json")
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing or invalid API key"},
    403: {"model": ErrorBody, "description": "the key lacks the scope this route needs"},
    429: {"model": ErrorBody, "description": "rate limit"}}
_BODY_ERRORS: dict[int | str, dict[str, Any]] = _ERRORS | {
    413: {"model": ErrorBody, "description": "over the policy's size limits"},
    415: {"model": ErrorBody, "description": "the body is not JSON"},
    422: {"model": ErrorBody, "description": "invalid request"}}


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The request body in the OpenAPI document (the routes read the body themselves, to
    enforce the byte limit before parsing)."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}}}}


@dataclass(frozen=True)
class Caller:
    """Who is asking: the key's name (None when auth is off) and what it may see."""

    key_id: str | None
    scopes: frozenset[KeyScope]

    @property
    def inspect(self) -> bool:
        return "inspect" in self.scopes


@dataclass(frozen=True)
class AppState:
    settings: ServeSettings
    engine: Engine
    responder: Responder | None
    audit: AuditLog
    keys: KeyStore | None
    metrics: ProxyMetrics
    shared: SharedState
    auth_failures: RateLimiter
    verifier: Verifier
    model_id: str


def served_model_id(responder: Responder | None) -> str:
    """The model name the proxy lists: the upstream's model, else its spec."""
    if responder is None:
        return "oyster-decide-only"
    spec = responder.backend.spec
    kind, _, rest = spec.partition(":")
    return (rest.rpartition("@")[0] or rest) if kind == "openai" else upstream_name(spec)


def upstream_name(spec: str) -> str:
    """A backend spec without its address (`openai:MODEL@URL` → `openai:MODEL`; an `hf:`
    path → its last part)."""
    kind, _, rest = spec.partition(":")
    if kind == "openai":
        return f"openai:{rest.rpartition('@')[0] or rest}"
    if kind == "hf":
        return f"hf:{rest.rstrip('/').rpartition('/')[2]}"
    return spec


def create_app(settings: ServeSettings, engine: Engine, responder: Responder | None,
               audit: AuditLog, keys: KeyStore | None = None, *,
               model_id: str | None = None, shared: SharedState | None = None) -> FastAPI:
    """The proxy app. `keys=None` turns auth off. `responder=None` serves decisions only
    (chat completions answer 503). `shared` holds rate limits and key revocations (default:
    this process only). The app opens `audit` and `shared` at startup and closes them at
    shutdown. Its `AppState` (metrics registry included) is at `app.state.oyster`."""
    state = AppState(settings=settings, engine=engine, responder=responder, audit=audit,
                     keys=keys, metrics=ProxyMetrics(),
                     shared=shared or LocalState(settings.rate_limit_per_minute),
                     auth_failures=RateLimiter(settings.auth_failures_per_minute),
                     verifier=responder.verifier if responder else Verifier(engine.policy),
                     model_id=model_id or served_model_id(responder))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(audit.open)
        await state.shared.start()
        if keys is None:
            log.warning("oyster serve: no API keys configured: authentication is OFF")
        try:
            yield
        finally:
            await state.shared.close()
            await anyio.to_thread.run_sync(audit.close)
            if responder is not None:  # the upstream's pooled connections live on this loop
                await responder.backend.aclose()

    app = FastAPI(title="Oyster guardrail proxy", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.oyster = state
    # Inside the catch-all of install_error_handlers, so it sees an unexpected exception
    # (and records its type) before the catch-all answers 500; the one writer of the rows
    # of rejected requests (`observe` below only counts them).
    app.add_middleware(RequestLedger, audit=audit, policy_label=engine.policy.label,
                       metrics=state.metrics)

    def observe(request: Request | None, status: int, body: ErrorBody) -> None:
        state.metrics.rejections.labels(str(status), body.error.code or body.error.type).inc()

    install_error_handlers(app, observe)
    app.add_middleware(_RequestMetrics, metrics=state.metrics)  # outermost: counts every answer

    async def detailed(request: Request) -> bool:
        """Whether the caller may see operational details: an `admin` key, or auth off.
        Not rate-limited: health must be readable while the shared limiter is down."""
        return keys is None or ("authorization" in request.headers
                                and "admin" in (await _authenticate(state, request)).scopes)

    @app.get("/healthz", response_model_exclude_none=True)
    async def healthz(request: Request) -> Health:
        """Liveness for anyone; the details for `admin` keys (or when auth is off)."""
        if not await detailed(request):
            return Health()
        return Health(policy=engine.policy.label, assessor=engine.assessor.name,
                      upstream=upstream_name(responder.backend.spec) if responder else None,
                      auth=keys is not None, fail_mode=settings.fail_mode,
                      audit=audit.kind, state=state.shared.health())

    @app.get("/readyz", responses={503: {"model": Readiness}})
    async def readyz(request: Request) -> Response:
        """200 when every dependency answers, else 503, for anyone (load balancers); what
        fails, with the reason, for `admin` keys (or when auth is off)."""
        shared = state.shared.health()
        checks = {"audit": await _check(audit.check),
                  "state": None if shared.ok or settings.fail_mode == "open"
                  else shared.error or "unreachable"}
        if keys is not None:
            checks["keys"] = await _check(keys.check)
        failing = {name: problem for name, problem in checks.items() if problem}
        if failing and not await detailed(request):
            failing = dict.fromkeys(failing, "not answering")
        ready = Readiness(ready=not failing, problems=failing)
        return _json(ready, {}, 200 if ready.ready else 503)

    @app.get("/metrics", responses={200: {"content": {"text/plain": {}}}, **_ERRORS})
    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        await _admit(state, request, need="admin")
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        await _admit(state, request)
        return JSONResponse(app.openapi())

    @app.get("/v1/models", responses=_ERRORS)
    async def models(request: Request) -> ModelList:
        await _admit(state, request)
        return ModelList(data=[ModelCard(id=state.model_id, created=0)])

    @app.post("/v1/decide", openapi_extra=_body_schema(DecideRequest),
              responses={200: {"model": DecideResponse}, **_BODY_ERRORS})
    async def decide(request: Request) -> Response:
        arrived = time.time()
        started = time.perf_counter()
        caller = await _admit(state, request, need="inspect")
        body = DecideRequest.model_validate(await _read_json(request, engine))
        conversation = _read_messages(engine, body.messages)
        rid = f"dec-{uuid.uuid4().hex[:24]}"
        decision, decide_s = await _decide(state, conversation, rid)
        info = OysterInfo(request_id=rid, decision=decision, outcome="decided")
        await _audit(state, _record(state, info, key_id=caller.key_id, endpoint="decide",
                                    arrived=arrived, started=started, decide_s=decide_s,
                                    messages=conversation.messages))
        steered = instructions_for(decision, engine.policy, conversation.messages)
        return _json(DecideResponse(oyster=info, messages=steered),
                     _decision_headers(info, inspect=True))

    @app.post("/v1/chat/completions", openapi_extra=_body_schema(ChatCompletionRequest),
              responses={200: {"model": ChatCompletion, "content": {"text/event-stream": {}}},
                         **_BODY_ERRORS})
    async def chat(request: Request) -> Response:
        arrived = time.time()
        started = time.perf_counter()
        caller = await _admit(state, request)
        if responder is None:
            raise ProxyError(503, "this proxy serves decisions only (/v1/decide); it has no "
                             "upstream model", "service_unavailable")
        body = ChatCompletionRequest.model_validate(await _read_json(request, engine))
        conversation = _read_messages(engine, body.messages, for_reply=True)
        params = body.generation_params(responder.params, settings.upstream_timeout_s)
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        # the reply's relevance check embeds the user's turns: handed to a worker now, beside
        # the decision and the upstream's generation (the check waits for that encode if it
        # is still on); the executor holds the work until it ends, and it never raises
        asyncio.get_running_loop().run_in_executor(
            None, state.verifier.prefetch, conversation.messages)
        decision, decide_s = await _decide(state, conversation, rid)
        context = _Turn(state=state, caller=caller, rid=rid, arrived=arrived,
                        started=started, decide_s=decide_s, messages=conversation.messages,
                        decision=decision, params=params)
        if body.stream:
            return await _stream_reply(context)
        return await _complete_reply(context)

    return app


# -- admission: auth, rate limit, size and shape ---------------------------------------------

async def _check(probe: Any) -> str | None:
    """None when `probe()` (blocking) succeeds, else why not."""
    try:
        await anyio.to_thread.run_sync(probe)
    except OysterError as e:
        return str(e)
    return None


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "?"


async def _admit(state: AppState, request: Request, need: KeyScope | None = None) -> Caller:
    """Authenticate, check the scope `need` (when auth is on) and rate-limit."""
    if state.keys is None:
        caller = Caller(None, frozenset(state.settings.open_scopes))
    else:
        caller = await _authenticate(state, request)
        note_key(caller.key_id)
        if need is not None and need not in caller.scopes:
            raise ProxyError(403, f"this API key lacks the '{need}' scope", "permission_error",
                             "insufficient_scope")
    bucket = caller.key_id or f"ip:{_client_address(request)}"
    try:
        admission = await state.shared.admit(bucket, caller.key_id)
    except StateUnavailable as e:
        log.error("request refused: %s", e)
        raise ProxyError(503, "shared state is unreachable and the fail mode is closed",
                         "service_unavailable", "state_unavailable", {"retry-after": "1"}
                         ) from None
    if admission.revoked:
        raise _invalid_key()
    wait = admission.wait_s
    if wait is not None:
        raise ProxyError(429, f"rate limit of {state.settings.rate_limit_per_minute} requests"
                         f" per minute reached; retry in {wait:.1f}s", "rate_limit_error",
                         "rate_limit_exceeded", {"retry-after": str(max(1, round(wait)))})
    return caller


async def _authenticate(state: AppState, request: Request) -> Caller:
    """The caller of a valid key. Failed attempts use up the client address's allowance;
    once it is spent, every attempt from there waits (429) before any key is checked."""
    assert state.keys is not None
    address = _client_address(request)
    blocked = state.auth_failures.wait(address)
    if blocked is not None:
        state.metrics.auth_failures.labels("blocked").inc()
        raise ProxyError(429, "too many failed authentication attempts from this address; "
                         f"retry in {blocked:.0f}s", "rate_limit_error", "too_many_auth_failures",
                         {"retry-after": str(max(1, round(blocked)))})
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        identity = (await state.shared.verify_key(state.keys, token.strip())
                    if scheme.lower() == "bearer" and token.strip() else None)
    except KeyStoreError as e:
        log.error("key lookup failed: %s", e)
        raise ProxyError(503, "the key store cannot be reached", "service_unavailable",
                         "key_store_unavailable", {"retry-after": "1"}) from None
    if identity is None:
        missing = not token.strip()
        state.metrics.auth_failures.labels("missing" if missing else "invalid").inc()
        state.auth_failures.acquire(address)
        log.info("failed authentication from %s (%s key)", address,
                 "no" if missing else "invalid")
        if missing:
            raise ProxyError(401, "missing API key: send 'Authorization: Bearer KEY'",
                             "authentication_error", "missing_api_key",
                             {"www-authenticate": "Bearer"})
        raise _invalid_key()
    return Caller(identity.name, identity.scopes)


def _invalid_key() -> ProxyError:
    return ProxyError(401, "invalid or revoked API key", "authentication_error",
                      "invalid_api_key", {"www-authenticate": "Bearer"})


_JSON_TYPES = ("application/json",)


async def _read_json(request: Request, engine: Engine) -> Any:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media not in _JSON_TYPES and not (media.startswith("application/")
                                         and media.endswith("+json")):
        raise ProxyError(415, "the body must be JSON, sent with 'Content-Type: "
                         f"application/json' (got {media[:60] or 'no content type'!r})",
                         "invalid_request_error", "unsupported_media_type")
    limit = engine.policy.limits.max_request_bytes
    too_large = ProxyError(413, f"request body larger than {limit} bytes (policy "
                           "limits.max_request_bytes)", "invalid_request_error",
                           "request_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise too_large
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProxyError.invalid(f"request body is not valid JSON: {e}", "invalid_json"
                                 ) from None
    except (ValueError, RecursionError) as e:  # NaN, a 5,000-digit number, deep nesting
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:120]
        raise ProxyError.invalid(f"request body is not valid JSON: {reason}", "invalid_json"
                                 ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _read_messages(engine: Engine, raw: list[dict[str, Any]], for_reply: bool = False
                   ) -> ConversationText:
    """The conversation as the engine reads it, within the policy's size limits."""
    try:
        conversation = engine.read(raw)
    except InputError as e:
        raise ProxyError.from_input(e) from None
    last = conversation.messages[-1]
    if for_reply and (last.role != "user" or not last.content.strip()):
        raise ProxyError.invalid("the conversation must end with a non-empty user message or "
                                 "tool result", "invalid_messages", "messages")
    return conversation


# -- deciding, generating, auditing ----------------------------------------------------------

async def _decide(state: AppState, conversation: ConversationText, rid: str
                  ) -> tuple[Decision, float]:
    t = time.perf_counter()
    decision = await state.engine.adecide(conversation, id=rid)
    elapsed = time.perf_counter() - t
    note_decision(decision, elapsed)
    state.metrics.decide_latency.observe(elapsed)
    state.metrics.decisions.labels(decision.level, decision.strategy).inc()
    return decision, elapsed


def upstream_failure(error: BackendError) -> str:
    """What a client learns of an upstream failure: its kind, never the upstream's own text
    (which names its address)."""
    return "timeout" if isinstance(error, BackendTimeout) else "failed"


@dataclass(frozen=True)
class _Turn:
    """One chat request, decided, waiting for its reply."""

    state: AppState
    caller: Caller
    rid: str
    arrived: float
    started: float
    decide_s: float
    messages: list[ChatMessage]
    decision: Decision
    params: GenerationParams

    def responder(self) -> Responder:
        """The app's responder with this request's generation parameters."""
        assert self.state.responder is not None
        return self.state.responder.with_params(self.params)

    @property
    def fail_open(self) -> bool:
        return self.state.settings.fail_mode == "open"

    def info(self, outcome: Outcome, passed: bool | None = None,
             problems: list[str] | None = None, fallback_used: bool = False,
             upstream_error: BackendError | None = None) -> OysterInfo:
        """What happened, in full (for the audit log; `shown` is the client's view)."""
        return OysterInfo(request_id=self.rid, decision=self.decision, outcome=outcome,
                          verification=VerificationSummary(passed=passed,
                                                           problems=problems or []),
                          fallback_used=fallback_used,
                          upstream_error=str(upstream_error) if upstream_error else None)

    def shown(self, info: OysterInfo, upstream_error: BackendError | None = None
              ) -> OysterInfo | None:
        """`info` as this caller may see it: None without the `inspect` scope."""
        if not self.caller.inspect:
            return None
        kind = upstream_failure(upstream_error) if upstream_error else None
        return info.model_copy(update={"upstream_error": kind})

    def headers(self, info: OysterInfo, with_outcome: bool = True) -> dict[str, str]:
        return _decision_headers(info, inspect=self.caller.inspect, with_outcome=with_outcome)

    def record(self, info: OysterInfo, *, stream: bool, model: str | None, status: int = 200,
               upstream_s: float | None = None, reply: str | None = None) -> AuditRecord:
        return _record(self.state, info, key_id=self.caller.key_id, endpoint="chat",
                       arrived=self.arrived, started=self.started, decide_s=self.decide_s,
                       messages=self.messages, stream=stream, model=model, status=status,
                       upstream_s=upstream_s, reply=reply)

    def upstream_failed(self, error: BackendError) -> None:
        kind = "timeout" if isinstance(error, BackendTimeout) else "error"
        self.state.metrics.upstream_errors.labels(kind).inc()
        log.warning("request %s: upstream failed (%s mode): %s", self.rid,
                    self.state.settings.fail_mode, error)

    def passthrough(self, error: BackendError) -> ProxyError:
        """The upstream's failure as this proxy's HTTP error (fail mode `open`)."""
        timeout = isinstance(error, BackendTimeout)
        return ProxyError(504 if timeout else 502,
                          "the upstream model did not answer in time" if timeout
                          else "the upstream model failed", "upstream_error",
                          "upstream_timeout" if timeout else "upstream_failed",
                          self.headers(self.info("upstream_error")))


def _record(state: AppState, info: OysterInfo, *, key_id: str | None, endpoint: Endpoint,
            arrived: float, started: float, decide_s: float, messages: list[ChatMessage],
            stream: bool = False, model: str | None = None, status: int = 200,
            upstream_s: float | None = None, reply: str | None = None) -> AuditRecord:
    d = info.decision
    with_text = state.engine.policy.audit.log_message_text
    return AuditRecord(
        id=info.request_id, time=arrived, key_id=key_id, endpoint=endpoint, stream=stream,
        model=model, policy=d.policy, level=d.level, categories=d.categories,
        attacks=d.attacks, user_type=d.user_type, strategy=d.strategy, utilities=d.utilities,
        language=d.language,
        outcome=info.outcome, verified=info.verification.passed,
        problems=info.verification.problems, fallback_used=info.fallback_used,
        upstream_error=info.upstream_error, status=status,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        decide_ms=round(decide_s * 1000, 3),
        upstream_ms=round(upstream_s * 1000, 3) if upstream_s is not None else None,
        messages=messages if with_text else None, reply=reply if with_text else None)


async def _audit(state: AppState, record: AuditRecord) -> None:
    state.metrics.outcomes.labels(record.outcome).inc()
    for problem in record.problems:
        state.metrics.verification_failures.labels(problem).inc()
    try:
        await state.audit.aappend(record)
    except AuditError as e:
        log.error("request %s: %s", record.id, e)
        raise ProxyError(503, "the audit log cannot be written; the request was not "
                         "answered", "audit_error") from None


def _decision_headers(info: OysterInfo, *, inspect: bool, with_outcome: bool = True
                      ) -> dict[str, str]:
    """The strategy for everyone; request id, level and outcome for `inspect` callers. A
    stream's outcome is only known at its end (it is in the last chunk's `oyster` object), so
    its headers leave it out."""
    headers: dict[str, str] = {"x-oyster-strategy": info.decision.strategy}
    if not inspect:
        return headers
    headers |= {"x-oyster-request-id": info.request_id, "x-oyster-level": info.decision.level}
    return headers | {"x-oyster-outcome": info.outcome} if with_outcome else headers


async def _complete_reply(turn: _Turn) -> Response:
    state = turn.state
    assert state.responder is not None
    policy = state.engine.policy
    t = time.perf_counter()
    try:
        with anyio.fail_after(state.settings.upstream_timeout_s):
            reply = await turn.responder().arespond_to(turn.decision, turn.messages)
    except (BackendError, TimeoutError) as e:
        error = e if isinstance(e, BackendError) else BackendTimeout(
            f"upstream: no reply within {state.settings.upstream_timeout_s:g}s")
        upstream_s = time.perf_counter() - t
        turn.upstream_failed(error)
        info = turn.info("upstream_error", fallback_used=not turn.fail_open,
                         upstream_error=error)
        if turn.fail_open:
            problem = turn.passthrough(error)
            await _audit(state, turn.record(info, stream=False, model=None,
                                            status=problem.status, upstream_s=upstream_s))
            raise problem from None
        text = fallback_reply(turn.decision, policy,
                              at_risk=state.verifier.needs_resource(turn.decision))
        await _audit(state, turn.record(info, stream=False, model=None, upstream_s=upstream_s,
                                        reply=text))
        return _completion_response(turn, info, text, state.model_id, _usage(None), error)
    upstream_s = time.perf_counter() - t
    state.metrics.upstream_latency.observe(upstream_s)
    problems = [p for a in reply.attempts for p in a.verification.problems]
    info = turn.info(reply.outcome, passed=reply.verification.passed,
                     problems=list(dict.fromkeys(problems)), fallback_used=reply.fallback_used)
    model = reply.completion.model if reply.completion else state.model_id
    await _audit(state, turn.record(info, stream=False, model=model, upstream_s=upstream_s,
                                    reply=reply.text))
    return _completion_response(turn, info, reply.text, model, _usage(reply))


def _usage(reply: Reply | None) -> Usage:
    """The tokens the upstream reported for this request, summed over every generation it
    made (a regenerated or replaced reply cost them all); zeros when no model was asked (a
    policy refusal, an upstream failure) or it reported no counts. Always sent: OpenAI
    clients read `usage` for accounting."""
    done = [a.completion for a in reply.attempts if a.completion] if reply else []
    prompt = sum(c.prompt_tokens or 0 for c in done)
    completion = sum(c.completion_tokens or 0 for c in done)
    return Usage(prompt_tokens=prompt, completion_tokens=completion,
                 total_tokens=prompt + completion)


def _json(body: BaseModel, headers: dict[str, str], status: int = 200) -> Response:
    # pydantic's own JSON encoder: one pass, no intermediate dict
    return Response(body.model_dump_json(exclude_none=True), status_code=status,
                    media_type="application/json", headers=headers)


def _completion_response(turn: _Turn, info: OysterInfo, text: str, model: str,
                         usage: Usage, upstream_error: BackendError | None = None
                         ) -> Response:
    body = ChatCompletion(id=turn.rid, created=int(turn.arrived), model=model,
                          choices=[Choice(message=AssistantMessage(content=text))],
                          usage=usage, oyster=turn.shown(info, upstream_error))
    return _json(body, turn.headers(info))


async def _stream_reply(turn: _Turn) -> Response:
    state = turn.state
    assert state.responder is not None
    policy = state.engine.policy
    decision = turn.decision
    request = turn.messages[-1].content
    upstream = telemetry.traced_stream(
        "oyster.generate",
        state.responder.backend.astream(instructions_for(decision, policy, turn.messages),
                                        turn.params),
        {"oyster.backend": state.responder.backend.spec, "oyster.stream": True})

    async def recover() -> Recovery:
        reply = await turn.responder().arespond_to(decision, turn.messages)
        outcome = "regenerated" if reply.outcome == "passed" else reply.outcome
        return Recovery(reply.text, outcome, reply.verification)

    stream = VerifiedStream(
        upstream,
        check=lambda text, final: state.verifier.check(text, decision, final=final,
                                                       request=request),
        fallback=lambda: fallback_reply(decision, policy,
                                        at_risk=state.verifier.needs_resource(decision)),
        resource_note=lambda: resource_note(policy, decision.language),
        window_chars=state.settings.stream_check_chars,
        hold_chars=state.settings.stream_hold_chars.get(decision.strategy, 0),
        recover=recover, timeout_s=state.settings.upstream_timeout_s, fail_open=turn.fail_open,
        suspicious=state.verifier.moderator.suspicious)
    try:
        await stream.start()
    except BackendError as e:  # fail open, before anything was sent: a plain HTTP error
        await stream.aclose()
        turn.upstream_failed(e)
        problem = turn.passthrough(e)
        info = turn.info("upstream_error", upstream_error=e)
        await _audit(state, turn.record(info, stream=True, model=None, status=problem.status,
                                        upstream_s=stream.upstream_s))
        raise problem from None
    headers = turn.headers(turn.info("passed"), with_outcome=False)
    return StreamingResponse(_sse(turn, stream), media_type="text/event-stream",
                             headers=headers | {"cache-control": "no-cache"})


async def _sse(turn: _Turn, stream: VerifiedStream) -> AsyncIterator[str]:
    state = turn.state
    model = state.model_id

    def chunk(delta: Delta, finish: str | None = None, info: OysterInfo | None = None) -> str:
        body = ChatCompletionChunk(id=turn.rid, created=int(turn.arrived), model=model,
                                   choices=[ChunkChoice(delta=delta, finish_reason=finish)],
                                   oyster=info)
        return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

    def error_event(message: str, type: str, code: str) -> str:
        error = ErrorBody(error=ErrorDetail(message=message, type=type, code=code))
        return f"data: {error.model_dump_json(exclude_none=True)}\n\n"

    def outcome_info() -> OysterInfo:
        v = stream.verification
        return turn.info(stream.outcome, passed=v.passed if v else None,
                         problems=stream.problems,
                         fallback_used=stream.fallback_used,
                         upstream_error=stream.upstream_error)

    audited = False
    gone = anyio.get_cancelled_exc_class()
    try:
        yield chunk(Delta(role="assistant", content=""))
        try:
            async for piece in stream.pieces():
                yield chunk(Delta(content=piece))
        except BackendError as e:  # fail open, mid-stream: end with an error event
            turn.upstream_failed(e)
            info = outcome_info()
            audited = True
            await _audit(state, turn.record(info, stream=True, model=model, status=502,
                                            upstream_s=stream.upstream_s, reply=stream.sent))
            yield error_event("the upstream model failed", "upstream_error", "upstream_failed")
            return
        except Exception as e:  # a bug of ours, mid-stream: end the stream cleanly, say so
            log.exception("request %s: streaming failed", turn.rid)
            audited = True
            record = turn.record(outcome_info().model_copy(update={"outcome": "error"}),
                                 stream=True, model=model, status=500,
                                 upstream_s=stream.upstream_s, reply=stream.sent)
            await _audit(state, record.model_copy(
                update={"error": f"internal_error: {type(e).__name__}: {e}"}))
            yield error_event("the proxy could not complete the reply", "server_error",
                              "internal_error")
            return
        if stream.upstream_error is not None:
            turn.upstream_failed(stream.upstream_error)
        else:
            state.metrics.upstream_latency.observe(stream.upstream_s or 0.0)
        info = outcome_info()
        audited = True
        await _audit(state, turn.record(info, stream=True, model=model,
                                        upstream_s=stream.upstream_s, reply=stream.sent))
        yield chunk(Delta(), "stop", turn.shown(info, stream.upstream_error))
        yield "data: [DONE]\n\n"
    except BaseException as e:
        if not audited:  # the client went away (499) or the proxy failed (500) mid-stream
            left = isinstance(e, gone | GeneratorExit)
            info = outcome_info().model_copy(
                update={"outcome": "cancelled" if left else "error"})
            record = turn.record(info, stream=True, model=model, status=499 if left else 500,
                                 upstream_s=stream.upstream_s, reply=stream.sent)
            if not left:
                record = record.model_copy(update={"error": f"internal_error: "
                                                            f"{type(e).__name__}: {e}"})
            # submit without awaiting: this task may be being cancelled
            state.audit.submit(record)
            state.metrics.outcomes.labels(record.outcome).inc()
        raise
    finally:
        await stream.aclose()


# -- plumbing ---------------------------------------------------------------------------------

class _RequestMetrics:
    """Counts every answered request by route and status and times it to the last byte
    (so streamed replies are timed whole)."""

    def __init__(self, app: ASGIApp, metrics: ProxyMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        started = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.metrics.requests.labels(route, str(status)).inc()
                self.metrics.request_latency.labels(route).observe(
                    time.perf_counter() - started)

        await self.app(scope, receive, timed_send)
