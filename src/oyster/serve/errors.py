"""Every failure of the proxy as an OpenAI-style error body, never plain text.

`ProxyError` is what the routes raise on purpose. `install_error_handlers` turns everything
else into the same shape: FastAPI's own 404/405, validation errors, `BudgetExceeded` (413 or
422), and any other exception (500, logged with its traceback). No handler re-raises, so the
server never drops a keep-alive connection after an error.

Each error passes through one `observe(request, status, body)` callback before it is sent:
the app counts rejections there. Their audit rows are not written here but by the request
ledger (`oyster.serve.ledger`), which sees every response of the audited routes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oyster.errors import BudgetExceeded, InputError, OysterError
from oyster.serve.schemas import ErrorBody, ErrorDetail

log = logging.getLogger("oyster.serve")

ErrorObserver = Callable[[Request | None, int, ErrorBody], None]

# Size limits answer 413 (the request is too big); a count or shape limit answers 422.
_BUDGET_STATUS = {"max_request_bytes": 413, "max_total_chars": 413, "max_embedded_chars": 413,
                  "max_decide_seconds": 413, "max_messages": 422, "max_message_chars": 422}
_BUDGET_CODE = {"max_messages": "too_many_messages", "max_message_chars": "message_too_long"}


class ProxyError(Exception):
    """An HTTP error answered with OpenAI's error body."""

    def __init__(self, status: int, message: str, type: str, code: str | None = None,
                 headers: dict[str, str] | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(error=ErrorDetail(message=message, type=type, code=code,
                                                param=param))
        self.headers = headers or {}

    @classmethod
    def invalid(cls, message: str, code: str = "invalid_request", param: str | None = None
                ) -> ProxyError:
        return cls(422, message, "invalid_request_error", code, param=param)

    @classmethod
    def from_input(cls, e: InputError) -> ProxyError:
        if isinstance(e, BudgetExceeded):
            return cls(_BUDGET_STATUS.get(e.limit, 413), str(e), "invalid_request_error",
                       _BUDGET_CODE.get(e.limit, "request_too_large"))
        return cls.invalid(str(e), "invalid_messages", "messages")

    @classmethod
    def from_validation(cls, errors: list[Any]) -> ProxyError:
        err = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in err.get("loc", ()) or () if p != "body"]
        field = ".".join(loc) or "body"
        return cls.invalid(f"{field}: {err.get('msg')}", param=field)


def install_error_handlers(app: FastAPI, observe: ErrorObserver) -> None:
    """JSON error bodies for every failure of `app` (see the module docstring)."""

    def respond(request: Request | None, e: ProxyError) -> JSONResponse:
        observe(request, e.status, e.body)
        return JSONResponse(e.body.model_dump(mode="json", exclude_none=True),
                            status_code=e.status, headers=e.headers)

    @app.exception_handler(ProxyError)
    async def proxy_error(request: Request, e: ProxyError) -> Response:
        return respond(request, e)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        kind = "not_found" if e.status_code == 404 else (
            "method_not_allowed" if e.status_code == 405 else None)
        error = ProxyError(e.status_code, str(e.detail), "invalid_request_error", kind,
                           headers=dict(e.headers or {}))
        return respond(request, error)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, e: RequestValidationError) -> Response:
        return respond(request, ProxyError.from_validation(list(e.errors())))

    @app.exception_handler(ValidationError)
    async def invalid(request: Request, e: ValidationError) -> Response:
        return respond(request, ProxyError.from_validation(list(e.errors())))

    @app.exception_handler(InputError)
    async def input_error(request: Request, e: InputError) -> Response:
        return respond(request, ProxyError.from_input(e))

    @app.exception_handler(OysterError)
    async def oyster_error(request: Request, e: OysterError) -> Response:
        log.error("%s %s failed: %s", request.method, request.url.path, e)
        return respond(request, ProxyError(500, "the proxy could not complete the request",
                                           "server_error", "internal_error"))

    app.add_middleware(_CatchAll, respond=respond)


class _CatchAll:
    """Answer an exception no handler took with a JSON 500 instead of letting it reach the
    server (Starlette's last-resort handler re-raises it, and uvicorn then drops the
    connection). Once a response has started, the connection is all that is left to end."""

    def __init__(self, app: ASGIApp, respond: Callable[[Request | None, ProxyError],
                                                        JSONResponse]) -> None:
        self.app = app
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("%s %s: unexpected error", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = self.respond(Request(scope), ProxyError(
                500, "the proxy could not complete the request", "server_error",
                "internal_error"))
            await response(scope, receive, send)
