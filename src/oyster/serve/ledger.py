"""One audit row and one trace for every request to a decision endpoint, whatever happens
to it.

The handlers write the rows of the requests they decide on (`oyster.serve.app`). This
middleware sees every request to `/v1/chat/completions` and `/v1/decide` from outside and
writes the row for the ones no handler recorded, with the status the client got:

- rejected (401, 413, 422, 429, 503, ...): committed before the response is sent, with the
  error code from the OpenAI-style error body and the key's name when it was known;
- an internal error (500): committed before the error response, with the decision when one
  was made;
- a client that went away before its response (499): the work in flight is cancelled (the
  upstream call stops) and the row records it.

It also opens the request's SERVER span (joining a caller's W3C `traceparent`), puts the
decision and outcome on it, and answers rejected requests with `x-oyster-request-id`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oyster import telemetry
from oyster.decision import Decision
from oyster.serve.audit import AuditError, AuditLog, AuditRecord, Endpoint, collecting_rows
from oyster.serve.metrics import ProxyMetrics

log = logging.getLogger("oyster.serve")

AUDITED: dict[str, Endpoint] = {"/v1/chat/completions": "chat", "/v1/decide": "decide"}
_ID_PREFIX: dict[Endpoint, str] = {"chat": "chatcmpl", "decide": "dec"}
CLIENT_CLOSED = 499  # nginx's code for "the client closed the connection first"


@dataclass
class RequestScope:
    """What is known about the request being served, for the row the middleware may write."""

    id: str
    endpoint: Endpoint
    arrived: float
    started: float
    key_id: str | None = None
    decision: Decision | None = None
    decide_s: float | None = None
    disconnected: bool = False
    rows: list[AuditRecord] = field(default_factory=list)


_current: ContextVar[RequestScope | None] = ContextVar("oyster_request", default=None)


def note_key(key_id: str | None) -> None:
    """The request's API key is known (so a later rejection, e.g. 429, names it)."""
    scope = _current.get()
    if scope is not None:
        scope.key_id = key_id


def note_decision(decision: Decision, decide_s: float) -> None:
    """The request is decided (so a later internal error still records the decision)."""
    scope = _current.get()
    if scope is not None:
        scope.decision, scope.decide_s = decision, decide_s


class RequestLedger:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp, audit: AuditLog, policy_label: str,
                 metrics: ProxyMetrics) -> None:
        self.app = app
        self.audit = audit
        self.policy_label = policy_label
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = AUDITED.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = RequestScope(id=f"{_ID_PREFIX[endpoint]}-{uuid.uuid4().hex[:24]}",
                               endpoint=endpoint, arrived=time.time(),
                               started=time.perf_counter())
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        name = f"{scope['method']} {scope['path']}"
        with telemetry.request_span(name, {"http.request.method": scope["method"],
                                           "url.path": scope["path"]}, headers) as span, \
                collecting_rows() as rows:
            request.rows = rows
            annotated = False

            def annotate() -> None:
                # before the last byte: a server's own span may end right after it
                nonlocal annotated
                if rows and not annotated:
                    annotated = True
                    span.set_attributes(_span_attributes(rows[0]))

            token = _current.set(request)
            try:
                await self._serve(request, scope, receive, send, annotate)
            finally:
                _current.reset(token)
                annotate()

    async def _serve(self, request: RequestScope, scope: Scope, receive: Receive,
                     send: Send, annotate: Callable[[], None]) -> None:
        body_read = anyio.Event()
        response = _Response()

        async def app_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                request.disconnected = True
            elif not message.get("more_body", False):
                body_read.set()
            return message

        async def app_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                response.status = message["status"]
                if not request.rows and response.status >= 400:
                    response.held = message  # sent with its body, once the row is in
                    return
            elif message["type"] == "http.response.body":
                if response.held is not None:
                    start, response.held = response.held, None
                    await self._reject(request, start, bytes(message.get("body", b"")))
                    await send(start)
                if not message.get("more_body", False):
                    response.finished = True
                    annotate()
            await send(message)

        failure: Exception | None = None
        async with anyio.create_task_group() as tasks:
            async def watch_for_disconnect() -> None:
                # after the body, the next message can only be the client leaving
                await body_read.wait()
                message = await receive()
                if message["type"] == "http.disconnect" and not response.finished:
                    request.disconnected = True
                    tasks.cancel_scope.cancel()

            tasks.start_soon(watch_for_disconnect)
            try:
                await self.app(scope, app_receive, app_send)
            except Exception as e:  # recorded below, then raised for the 500 response
                failure = e
            finally:
                tasks.cancel_scope.cancel()
        if not request.rows:
            if request.disconnected and not response.finished:
                self._record_gone(request)
                return
            if failure is not None:
                await self._record(request, 500, "error",
                                   f"internal_error: {type(failure).__name__}: {failure}")
                raise failure
            if response.status is not None:  # answered without a row: must not happen
                log.error("request %s: answered %s without an audit row", request.id,
                          response.status)
                await self._record(request, response.status, "error", "unrecorded response")
        elif failure is not None:
            raise failure

    async def _reject(self, request: RequestScope, start: Message, body: bytes) -> None:
        status = int(start["status"])
        start["headers"] = [*start.get("headers", []),
                            (b"x-oyster-request-id", request.id.encode())]
        await self._record(request, status, "rejected" if status < 500 else "error",
                           _error_text(body, status))

    def _row(self, request: RequestScope, status: int, outcome: Any, error: str | None
             ) -> AuditRecord:
        d = request.decision
        decided: dict[str, Any] = {} if d is None else {
            "policy": d.policy, "level": d.level, "categories": d.categories,
            "attacks": d.attacks, "user_type": d.user_type, "strategy": d.strategy,
            "utilities": d.utilities, "language": d.language}
        return AuditRecord(
            id=request.id, time=request.arrived, key_id=request.key_id,
            endpoint=request.endpoint, **({"policy": self.policy_label} | decided),
            outcome=outcome, status=status, error=error,
            latency_ms=round((time.perf_counter() - request.started) * 1000, 3),
            decide_ms=(round(request.decide_s * 1000, 3) if request.decide_s is not None
                       else None))

    async def _record(self, request: RequestScope, status: int, outcome: str,
                      error: str | None) -> None:
        record = self._row(request, status, outcome, error)
        self.metrics.outcomes.labels(outcome).inc()
        try:
            await self.audit.aappend(record)
        except AuditError as e:  # the response still goes out: it serves nothing
            log.error("request %s: %s", record.id, e)

    def _record_gone(self, request: RequestScope) -> None:
        record = self._row(request, CLIENT_CLOSED, "cancelled", "the client went away")
        self.metrics.outcomes.labels("cancelled").inc()
        try:
            self.audit.submit(record)  # nobody waits for this answer
        except AuditError as e:
            log.error("request %s: %s", record.id, e)


@dataclass
class _Response:
    status: int | None = None
    held: Message | None = None
    finished: bool = False


def _error_text(body: bytes, status: int) -> str:
    """`code: message` from an OpenAI-style error body (or whatever it says)."""
    try:
        error = json.loads(body)["error"]
        return f"{error.get('code') or error.get('type')}: {error.get('message', '')}"[:500]
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"


def _span_attributes(row: AuditRecord) -> dict[str, telemetry.AttributeValue]:
    attributes: dict[str, telemetry.AttributeValue] = {
        "oyster.request_id": row.id, "oyster.endpoint": row.endpoint,
        "oyster.outcome": row.outcome, "oyster.stream": row.stream,
        "oyster.policy": row.policy, "http.response.status_code": row.status}
    if row.key_id is not None:
        attributes["oyster.key_id"] = row.key_id
    if row.level is not None and row.strategy is not None:
        attributes |= {"oyster.level": row.level, "oyster.strategy": row.strategy,
                       "oyster.categories": [c.id for c in row.categories],
                       "oyster.attacks": list(row.attacks)}
    if row.verified is not None:
        attributes["oyster.verified"] = row.verified
    if row.problems:
        attributes["oyster.problems"] = list(row.problems)
    if row.error is not None:
        attributes["oyster.error"] = row.error.split(":", 1)[0]
    return attributes
