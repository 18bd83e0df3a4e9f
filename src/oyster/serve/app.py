"""The guardrail proxy: an OpenAI-compatible chat API in front of any `ChatBackend`, with a
decision for every request.

Routes: `POST /v1/chat/completions` (plain and streamed), `GET /v1/models`,
`POST /v1/decide` (decision only), `GET /healthz` (liveness, and what is degraded),
`GET /readyz` (every dependency answers), `GET /metrics`.

Stateless: each request's decision is recomputed from its own `messages`. Replicas share
only what they are given: the audit log and key store (SQLite or PostgreSQL) and, with a
`SharedState` on Redis, rate limits and key revocations. Every request to a decision
endpoint gets an audit row (`oyster.serve.ledger`). Build an app with `create_app(...)`;
everything it needs is passed in, nothing is global.
"""

from __future__ import annotations

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
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oyster import telemetry
from oyster.backends.base import GenerationParams
from oyster.decision import Decision
from oyster.engine import Engine, to_messages
from oyster.errors import BackendError, BackendTimeout, InputError, OysterError
from oyster.respond import Responder, Verifier, fallback_reply, instructions_for
from oyster.respond.fallback import resource_note
from oyster.serve.audit import AuditError, AuditLog, AuditRecord, Endpoint, Outcome
from oyster.serve.keys import KeyStore, KeyStoreError
from oyster.serve.ledger import RequestLedger, note_decision, note_key
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
from oyster.serve.stream import VerifiedStream
from oyster.taxonomy.policy import ServeSettings
from oyster.types import Message as ChatMessage

log = logging.getLogger("oyster.serve")

ROUTES = ("/v1/chat/completions", "/v1/decide", "/v1/models", "/healthz", "/readyz",
          "/metrics")


class ProxyError(Exception):
    """An HTTP error answered with OpenAI's error body."""

    def __init__(self, status: int, message: str, type: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(error=ErrorDetail(message=message, type=type, code=code))
        self.headers = headers or {}


@dataclass(frozen=True)
class AppState:
    settings: ServeSettings
    engine: Engine
    responder: Responder | None
    audit: AuditLog
    keys: KeyStore | None
    metrics: ProxyMetrics
    shared: SharedState
    verifier: Verifier
    model_id: str


def served_model_id(responder: Responder | None) -> str:
    """The model name the proxy lists: the upstream's model, else its spec."""
    if responder is None:
        return "oyster-decide-only"
    spec = responder.backend.spec
    kind, _, rest = spec.partition(":")
    return (rest.rpartition("@")[0] or rest) if kind == "openai" else spec


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
                     verifier=Verifier(engine.policy),
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
                  redoc_url=None)
    app.state.oyster = state
    app.add_middleware(_RequestMetrics, metrics=state.metrics)
    app.add_middleware(RequestLedger, audit=audit, policy_label=engine.policy.label,
                       metrics=state.metrics)
    _install_error_handlers(app)

    @app.get("/healthz")
    async def healthz() -> Health:
        return Health(policy=engine.policy.label, assessor=engine.assessor.name,
                      upstream=responder.backend.spec if responder else None,
                      auth=keys is not None, fail_mode=settings.fail_mode,
                      audit=audit.kind, state=state.shared.health())

    @app.get("/readyz")
    async def readyz() -> Response:
        shared = state.shared.health()
        checks = {"audit": await _check(audit.check),
                  "state": None if shared.ok or settings.fail_mode == "open"
                  else shared.error or "unreachable"}
        if keys is not None:
            checks["keys"] = await _check(keys.check)
        ready = Readiness(ready=not any(checks.values()), problems={
            name: problem for name, problem in checks.items() if problem})
        return _json(ready, {}, 200 if ready.ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request) -> ModelList:
        await _admit(state, request)
        return ModelList(data=[ModelCard(id=state.model_id, created=0)])

    @app.post("/v1/decide")
    async def decide(request: Request) -> Response:
        arrived = time.time()
        started = time.perf_counter()
        key_id = await _admit(state, request)
        body = DecideRequest.model_validate(await _read_json(request, settings))
        messages = _checked_messages(body.messages, settings)
        rid = f"dec-{uuid.uuid4().hex[:24]}"
        decision, decide_s = await _decide(state, messages, rid)
        info = OysterInfo(request_id=rid, decision=decision, outcome="decided")
        await _audit(state, _record(state, info, key_id=key_id, endpoint="decide",
                                    arrived=arrived, started=started, decide_s=decide_s,
                                    messages=messages))
        steered = instructions_for(decision, engine.policy, messages)
        return _json(DecideResponse(oyster=info, messages=steered), _decision_headers(info))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        arrived = time.time()
        started = time.perf_counter()
        key_id = await _admit(state, request)
        if responder is None:
            raise ProxyError(503, "this proxy serves decisions only (/v1/decide); it has no "
                             "upstream model", "service_unavailable")
        body = ChatCompletionRequest.model_validate(await _read_json(request, settings))
        messages = _checked_messages(body.messages, settings, for_reply=True)
        params = body.generation_params(responder.params, settings.upstream_timeout_s)
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        decision, decide_s = await _decide(state, messages, rid)
        context = _Turn(state=state, key_id=key_id, rid=rid, arrived=arrived, started=started,
                        decide_s=decide_s, messages=messages, decision=decision,
                        params=params)
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


async def _admit(state: AppState, request: Request) -> str | None:
    """Authenticate and rate-limit; the key's name (None when auth is off)."""
    key_id: str | None = None
    invalid = ProxyError(401, "invalid or revoked API key", "authentication_error",
                         "invalid_api_key", {"www-authenticate": "Bearer"})
    if state.keys is not None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ProxyError(401, "missing API key: send 'Authorization: Bearer KEY'",
                             "authentication_error", "missing_api_key",
                             {"www-authenticate": "Bearer"})
        try:
            key_id = await state.shared.verify_key(state.keys, token.strip())
        except KeyStoreError as e:
            log.error("key lookup failed: %s", e)
            raise ProxyError(503, "the key store cannot be reached", "service_unavailable",
                             "key_store_unavailable", {"retry-after": "1"}) from None
        if key_id is None:
            raise invalid
        note_key(key_id)
    bucket = key_id or f"ip:{request.client.host if request.client else '?'}"
    try:
        admission = await state.shared.admit(bucket, key_id)
    except StateUnavailable as e:
        log.error("request refused: %s", e)
        raise ProxyError(503, "shared state is unreachable and the fail mode is closed",
                         "service_unavailable", "state_unavailable", {"retry-after": "1"}
                         ) from None
    if admission.revoked:
        raise invalid
    wait = admission.wait_s
    if wait is not None:
        raise ProxyError(429, f"rate limit of {state.settings.rate_limit_per_minute} requests"
                         f" per minute reached; retry in {wait:.1f}s", "rate_limit_error",
                         "rate_limit_exceeded", {"retry-after": str(max(1, round(wait)))})
    return key_id


async def _read_json(request: Request, settings: ServeSettings) -> Any:
    limit = settings.max_request_bytes
    too_large = ProxyError(413, f"request body larger than {limit} bytes",
                           "invalid_request_error", "request_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise too_large
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProxyError(422, f"request body is not valid JSON: {e}",
                         "invalid_request_error", "invalid_json") from None


def _checked_messages(raw: list[dict[str, Any]], settings: ServeSettings,
                      for_reply: bool = False) -> list[ChatMessage]:
    if len(raw) > settings.max_messages:
        raise ProxyError(422, f"too many messages: {len(raw)} (at most "
                         f"{settings.max_messages})", "invalid_request_error",
                         "too_many_messages")
    try:
        messages = to_messages(raw)
    except InputError as e:
        raise ProxyError(422, str(e), "invalid_request_error", "invalid_messages") from None
    if for_reply and messages[-1].role != "user":
        raise ProxyError(422, "the conversation must end with a user message",
                         "invalid_request_error", "invalid_messages")
    for i, m in enumerate(messages):
        if len(m.content) > settings.max_message_chars:
            raise ProxyError(422, f"messages[{i}].content has {len(m.content)} characters (at"
                             f" most {settings.max_message_chars})", "invalid_request_error",
                             "message_too_long")
    return messages


def _invalid(e: ValidationError) -> ProxyError:
    err = e.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "body"
    return ProxyError(422, f"{field}: {err['msg']}", "invalid_request_error", "invalid_request")


# -- deciding, generating, auditing ----------------------------------------------------------

async def _decide(state: AppState, messages: list[ChatMessage], rid: str
                  ) -> tuple[Decision, float]:
    t = time.perf_counter()
    decision = await state.engine.adecide(messages, id=rid)
    elapsed = time.perf_counter() - t
    note_decision(decision, elapsed)
    state.metrics.decide_latency.observe(elapsed)
    state.metrics.decisions.labels(decision.level, decision.strategy).inc()
    return decision, elapsed


@dataclass(frozen=True)
class _Turn:
    """One chat request, decided, waiting for its reply."""

    state: AppState
    key_id: str | None
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
        return Responder(self.state.engine, self.state.responder.backend, self.params)

    @property
    def fail_open(self) -> bool:
        return self.state.settings.fail_mode == "open"

    def info(self, outcome: Outcome, passed: bool | None = None,
             problems: list[str] | None = None, fallback_used: bool = False,
             upstream_error: BackendError | None = None) -> OysterInfo:
        return OysterInfo(request_id=self.rid, decision=self.decision, outcome=outcome,
                          verification=VerificationSummary(passed=passed,
                                                           problems=problems or []),
                          fallback_used=fallback_used,
                          upstream_error=str(upstream_error) if upstream_error else None)

    def record(self, info: OysterInfo, *, stream: bool, model: str | None, status: int = 200,
               upstream_s: float | None = None, reply: str | None = None) -> AuditRecord:
        return _record(self.state, info, key_id=self.key_id, endpoint="chat",
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
        status = 504 if isinstance(error, BackendTimeout) else 502
        return ProxyError(status, f"upstream error: {error}", "upstream_error",
                          "upstream_timeout" if status == 504 else "upstream_failed",
                          _decision_headers(self.info("upstream_error")))


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


def _decision_headers(info: OysterInfo, with_outcome: bool = True) -> dict[str, str]:
    """The decision as response headers; a stream's outcome is only known at its end (it is
    in the last chunk's `oyster` object), so its headers leave it out."""
    headers = {"x-oyster-request-id": info.request_id,
               "x-oyster-strategy": info.decision.strategy,
               "x-oyster-level": info.decision.level}
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
        text = fallback_reply(turn.decision, policy)
        await _audit(state, turn.record(info, stream=False, model=None, upstream_s=upstream_s,
                                        reply=text))
        return _completion_response(turn, info, text, state.model_id, None)
    upstream_s = time.perf_counter() - t
    state.metrics.upstream_latency.observe(upstream_s)
    problems = [p for a in reply.attempts for p in a.verification.problems]
    info = turn.info(reply.outcome, passed=reply.verification.passed,
                     problems=list(dict.fromkeys(problems)), fallback_used=reply.fallback_used)
    model = reply.completion.model if reply.completion else state.model_id
    await _audit(state, turn.record(info, stream=False, model=model, upstream_s=upstream_s,
                                    reply=reply.text))
    usage = None
    c = reply.completion
    if c is not None and c.prompt_tokens is not None and c.completion_tokens is not None:
        usage = Usage(prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                      total_tokens=c.prompt_tokens + c.completion_tokens)
    return _completion_response(turn, info, reply.text, model, usage)


def _json(body: BaseModel, headers: dict[str, str], status: int = 200) -> Response:
    # pydantic's own JSON encoder: one pass, no intermediate dict
    return Response(body.model_dump_json(exclude_none=True), status_code=status,
                    media_type="application/json", headers=headers)


def _completion_response(turn: _Turn, info: OysterInfo, text: str, model: str,
                         usage: Usage | None) -> Response:
    body = ChatCompletion(id=turn.rid, created=int(turn.arrived), model=model,
                          choices=[Choice(message=AssistantMessage(content=text))],
                          usage=usage, oyster=info)
    return _json(body, _decision_headers(info))


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
    stream = VerifiedStream(
        upstream,
        check=lambda text, final: state.verifier.check(text, decision, final=final,
                                                       request=request),
        fallback=lambda: fallback_reply(decision, policy),
        resource_note=lambda: resource_note(policy, decision.language),
        window_chars=state.settings.stream_check_chars,
        timeout_s=state.settings.upstream_timeout_s, fail_open=turn.fail_open)
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
    headers = _decision_headers(turn.info("passed"), with_outcome=False)
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

    def outcome_info() -> OysterInfo:
        v = stream.verification
        return turn.info(stream.outcome, passed=v.passed if v else None,
                         problems=list(v.problems) if v else None,
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
            error = ErrorBody(error=ErrorDetail(message=f"upstream error: {e}",
                                                type="upstream_error", code="upstream_failed"))
            yield f"data: {error.model_dump_json()}\n\n"
            return
        if stream.upstream_error is not None:
            turn.upstream_failed(stream.upstream_error)
        else:
            state.metrics.upstream_latency.observe(stream.upstream_s or 0.0)
        info = outcome_info()
        audited = True
        await _audit(state, turn.record(info, stream=True, model=model,
                                        upstream_s=stream.upstream_s, reply=stream.sent))
        yield chunk(Delta(), "stop", info)
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

def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProxyError)
    async def proxy_error(request: Request, e: ProxyError) -> JSONResponse:
        return JSONResponse(e.body.model_dump(mode="json", exclude_none=True),
                            status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        body = ErrorBody(error=ErrorDetail(message=str(e.detail), type="invalid_request_error"))
        return JSONResponse(body.model_dump(mode="json", exclude_none=True),
                            status_code=e.status_code)

    @app.exception_handler(ValidationError)
    async def invalid(request: Request, e: ValidationError) -> JSONResponse:
        return await proxy_error(request, _invalid(e))

    @app.exception_handler(OysterError)
    async def oyster_error(request: Request, e: OysterError) -> JSONResponse:
        log.error("%s %s failed: %s", request.method, request.url.path, e)
        body = ErrorBody(error=ErrorDetail(message=str(e), type="server_error"))
        return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=500)


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

