"""The console's routes: pages rendered on the server (Jinja2), with a small script that
swaps fragments in place when JavaScript is on. Every form also works without it: the same
form posts to a full-page route.

    /console/playground   decide a typed conversation, reply, what-if
    /console/audit        filter, page, chart and export the audit log; /row/{id} for one
    /console/policy       the policy in force; validate an edited policy file
    /console/reports      the HTML reports of `oyster report`
"""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oyster.engine import Engine
from oyster.errors import BackendError, InputError, PolicyError
from oyster.respond import Responder
from oyster.serve.audit import AuditError, Outcome, write_records
from oyster.serve.console import charts
from oyster.serve.console.access import SESSION_COOKIE, SESSION_SECONDS, ConsoleAccess, Denied
from oyster.serve.console.auditquery import AuditFilter, AuditQuery, BucketUnit
from oyster.serve.console.playground import (
    Playground,
    parse_conversation,
    payloads_of,
    what_if_from_form,
)
from oyster.serve.console.policyview import policy_changes
from oyster.serve.console.reports import list_reports, report_path
from oyster.serve.keys import KeyStore
from oyster.taxonomy.policy import NONE_CATEGORY, Policy, policy_from_text
from oyster.types import LEVELS, STRATEGIES, USER_TYPES, Language
from oyster.types import Message as ChatMessage

PREFIX = "/console"
HERE = Path(__file__).parent
MAX_FORM_BYTES = 2_000_000
PAGE_SIZE = 50
OUTCOMES: tuple[str, ...] = get_args(Outcome)
LANGUAGES: tuple[str, ...] = get_args(Language)
FRAGMENT_HEADER = "x-console-fragment"
WHATIF_NOTE = "Change β, the prior or a severity to see how the decision moves. Nothing is saved."
_PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
             "script-src 'self'; frame-src 'self'; frame-ancestors 'none'; form-action 'self';"
             " base-uri 'none'")
# a report is self-contained (inline CSS and SVG); it may run nothing and fetch nothing
_REPORT_CSP = ("sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
               "frame-ancestors 'self'")


@dataclass
class ConsoleConfig:
    """Everything the console shows; `audit=None` or `reports_dir=None` leave those views
    with a note on how to turn them on."""

    engine: Engine
    responder: Responder | None = None
    audit: AuditQuery | None = None
    audit_source: str = ""
    keys: KeyStore | None = None
    bind_host: str = "127.0.0.1"
    reports_dir: Path | None = None
    policy_source: str = "the packaged default policy"


def mount_console(app: FastAPI, config: ConsoleConfig) -> None:
    """Add the console's routes, static files and security headers to `app`."""
    console = _Console(config)
    app.include_router(console.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(Denied, console.denied)  # type: ignore[arg-type]
    app.add_middleware(_SecurityHeaders)


def create_console_app(config: ConsoleConfig,
                       on_shutdown: Callable[[], Any] | None = None) -> FastAPI:
    """The console alone (`oyster console`)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        if config.responder is not None:
            await config.responder.backend.aclose()
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(title="Oyster console", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    mount_console(app, config)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse(f"{PREFIX}/playground", 303)

    return app


class _SecurityHeaders:
    """Headers for console responses only (the proxy's API answers as before)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        report = path.startswith(f"{PREFIX}/reports/file/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy",
                                   _REPORT_CSP if report else _PAGE_CSP)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("referrer-policy", "no-referrer")
                headers.setdefault("x-frame-options", "SAMEORIGIN" if report else "DENY")
                if not path.startswith(f"{PREFIX}/static/"):
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, with_headers)


def _utc(t: float | None, seconds: bool = True) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else ""))


def _parse_time(raw: str, field: str) -> float | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError(f"{field}: {raw!r} is not a date/time (YYYY-MM-DDTHH:MM, UTC)") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _input_time(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M")


def audit_filter(params: list[tuple[str, str]]) -> AuditFilter:
    """The audit browser's query string as a filter; `InputError` for values it cannot be."""
    multi: dict[str, list[str]] = {}
    for k, v in params:
        if v.strip():
            multi.setdefault(k, []).append(v.strip())

    def chosen(name: str, allowed: tuple[str, ...]) -> tuple[Any, ...]:
        values = multi.get(name, [])
        bad = [v for v in values if v not in allowed]
        if bad:
            raise InputError(f"{name}: unknown value {bad[0]!r} (one of {', '.join(allowed)})")
        return tuple(dict.fromkeys(values))

    def one(name: str) -> str | None:
        return multi.get(name, [None])[-1]

    language = one("language")
    if language is not None and language not in LANGUAGES:
        raise InputError(f"language: unknown value {language!r}")
    return AuditFilter(since=_parse_time(one("since") or "", "since"),
                       until=_parse_time(one("until") or "", "until"),
                       strategies=chosen("strategy", STRATEGIES), levels=chosen("level", LEVELS),
                       outcomes=chosen("outcome", OUTCOMES), category=one("category"),
                       language=language,  # type: ignore[arg-type]
                       key=one("key"))


def filter_query(where: AuditFilter, **extra: Any) -> str:
    """The filter back as a query string (for paging, export and chart links)."""
    pairs: list[tuple[str, str]] = []
    if where.since is not None:
        pairs.append(("since", _input_time(where.since)))
    if where.until is not None:
        pairs.append(("until", _input_time(where.until)))
    pairs += [("strategy", s) for s in where.strategies]
    pairs += [("level", s) for s in where.levels]
    pairs += [("outcome", s) for s in where.outcomes]
    for name in ("category", "language", "key"):
        value = getattr(where, name)
        if value is not None:
            pairs.append((name, value))
    pairs += [(k, str(v)) for k, v in extra.items() if v is not None]
    return urlencode(pairs)


class _Console:
    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self.access = ConsoleAccess(config.keys, config.bind_host)
        self.playground = Playground(config.engine, config.responder)
        self.templates = Jinja2Templates(directory=HERE / "templates")
        env = self.templates.env
        env.globals.update(prefix=PREFIX, strategies=STRATEGIES, levels=LEVELS,
                           user_types=USER_TYPES, outcomes=OUTCOMES, languages=LANGUAGES,
                           category_names=self.category_names)
        env.filters.update(utc=_utc, pct=lambda v: f"{100 * v:.0f}%")
        self.router = APIRouter(prefix=PREFIX, include_in_schema=False)
        self._routes()

    @property
    def policy(self) -> Policy:
        return self.config.engine.policy

    def category_names(self, category_id: str) -> tuple[str, str]:
        """(English, Chinese) names of a category id; the id twice if the policy lacks it."""
        if self.policy.has_category(category_id):
            c = self.policy.category(category_id)
            return c.name_en, c.name_zh
        return category_id, ""

    # -- rendering ---------------------------------------------------------------------

    def page(self, request: Request, template: str, status: int = 200, **context: Any
             ) -> HTMLResponse:
        context.setdefault("identity", getattr(request.state, "console_identity", None))
        context.setdefault("open_without_keys", self.access.open_without_keys)
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    async def denied(self, request: Request, exc: Denied) -> Response:
        if exc.login and request.method == "GET" and not request.headers.get(FRAGMENT_HEADER) \
                and "text/html" in request.headers.get("accept", ""):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{PREFIX}/login?{urlencode({'next': target})}", 303)
        return self.page(request, "denied.html", exc.status, reason=exc.reason,
                         can_login=exc.login)

    def who(self, request: Request) -> None:
        request.state.console_identity = self.access.identify(request)

    async def form(self, request: Request) -> dict[str, str]:
        """A posted urlencoded form (the console posts nothing else); last value wins."""
        self.access.check_origin(request)
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > MAX_FORM_BYTES:
                raise Denied(f"the form is larger than {MAX_FORM_BYTES:,} bytes", 413)
        return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))

    def decision_context(self, form: dict[str, str], timed: Any) -> dict[str, Any]:
        d = timed.decision
        assessment = d.assessment
        ranked = sorted(d.utilities.items(), key=lambda kv: kv[1], reverse=True)
        return {
            "decision": d, "decide_ms": timed.ms, "assessment": assessment,
            "payloads": payloads_of(assessment),
            "utility_chart": charts.utility_chart(d.utilities, d.strategy),
            "runner_up": ranked[1][0], "margin": ranked[0][1] - ranked[1][1],
            "conversation_text": form.get("conversation", ""),
            "generate": bool(form.get("generate")) and self.config.responder is not None,
            "upstream": self.config.responder.backend.spec if self.config.responder else None,
            "whatif_defaults": self.whatif_defaults(form, d),
        }

    def whatif_defaults(self, form: dict[str, str], d: Any) -> dict[str, Any]:
        game = self.policy.game
        top = next((c.id for c in sorted(d.categories, key=lambda c: -c.score)
                    if c.id != NONE_CATEGORY and self.policy.has_category(c.id)), "")
        category = form.get("category") or top
        severity = form.get("severity") or (
            f"{self.policy.category(category).severity:g}" if category else "")
        return {"beta": form.get("beta") or f"{game.beta:g}",
                "prior": {t: form.get(f"prior_{t}") or f"{game.prior[t]:.10g}"
                          for t in USER_TYPES},
                "category": category, "severity": severity,
                "categories": [c for c in self.policy.taxonomy.categories
                               if c.id != NONE_CATEGORY]}

    async def what_if_context(self, form: dict[str, str], messages: list[ChatMessage]
                              ) -> dict[str, Any]:
        change = what_if_from_form(form, self.policy)
        if change.empty:
            return {"whatif": None, "whatif_note": WHATIF_NOTE}
        result = await self.playground.what_if(messages, change)
        return {"whatif": result, "whatif_chart": charts.utility_chart(
            result.after.utilities, result.after.strategy, compare=result.before.utilities,
            title="Utilities under the what-if (dashed: as decided)")}

    async def reply_context(self, messages: list[ChatMessage]) -> dict[str, Any]:
        try:
            reply = await self.playground.reply(messages)
        except BackendError as e:
            return {"reply_error": f"the upstream failed: {e}"}
        return {"reply": reply}

    async def fragment(self, request: Request, template: str,
                       build: Callable[[dict[str, str], list[ChatMessage]],
                                       Awaitable[dict[str, Any]]]) -> Response:
        """A playground fragment for the page's script: the posted conversation, `build`'s
        context rendered with `template`, or the input error."""
        self.who(request)
        form = await self.form(request)
        try:
            context = await build(form, parse_conversation(form.get("conversation", "")))
        except InputError as e:
            return self.page(request, "_error.html", 422, error=str(e))
        return self.page(request, template, **context)

    # -- routes ------------------------------------------------------------------------

    def _routes(self) -> None:
        r = self.router
        cfg = self.config

        @r.get("")
        @r.get("/")
        async def home(request: Request) -> Response:
            return RedirectResponse(f"{PREFIX}/playground", 303)

        @r.get("/login")
        async def login_page(request: Request, next: str = f"{PREFIX}/playground") -> Response:
            if self.access.open_without_keys:
                return RedirectResponse(f"{PREFIX}/playground", 303)
            return self.page(request, "login.html", next=_local(next), error=None)

        @r.post("/login")
        async def login(request: Request) -> Response:
            form = await self.form(request)
            target = _local(form.get("next", ""))
            try:
                identity = self.access.check_key(form.get("key", ""))
            except Denied as e:
                return self.page(request, "login.html", e.status, next=target, error=e.reason)
            response = RedirectResponse(target, 303)
            response.set_cookie(SESSION_COOKIE, self.access.session_cookie(identity),
                                max_age=SESSION_SECONDS, path=PREFIX, httponly=True,
                                samesite="strict", secure=request.url.scheme == "https")
            return response

        @r.post("/logout")
        async def logout(request: Request) -> Response:
            self.access.check_origin(request)
            response = RedirectResponse(f"{PREFIX}/login", 303)
            response.delete_cookie(SESSION_COOKIE, path=PREFIX)
            return response

        # playground ----------------------------------------------------------------------

        def base_context() -> dict[str, Any]:
            return {"nav": "playground", "upstream": cfg.responder.backend.spec
                    if cfg.responder else None, "assessor": cfg.engine.assessor.name,
                    "policy_label": self.policy.label}

        @r.get("/playground")
        async def playground_page(request: Request) -> Response:
            self.who(request)
            return self.page(request, "playground.html", **base_context(),
                             conversation_text="", generate=cfg.responder is not None)

        @r.post("/playground")
        async def playground_full(request: Request) -> Response:
            """Without JavaScript: decision, what-if and reply in one page."""
            self.who(request)
            form = await self.form(request)
            context = base_context() | {"conversation_text": form.get("conversation", ""),
                                        "generate": bool(form.get("generate"))}
            try:
                messages = parse_conversation(form.get("conversation", ""))
                context |= self.decision_context(form, await self.playground.decide(messages))
                context |= await self.what_if_context(form, messages)
                if context["generate"]:
                    context |= await self.reply_context(messages)
                    context["reply_inline"] = True
            except InputError as e:
                return self.page(request, "playground.html", 422, **context, error=str(e))
            return self.page(request, "playground.html", **context)

        @r.post("/playground/decision")
        async def decision_fragment(request: Request) -> Response:
            async def build(form: dict[str, str], messages: list[ChatMessage]) -> dict[str, Any]:
                return self.decision_context(form, await self.playground.decide(messages)) | {
                    "whatif": None, "whatif_note": WHATIF_NOTE}
            return await self.fragment(request, "_decision.html", build)

        @r.post("/playground/reply")
        async def reply_fragment(request: Request) -> Response:
            return await self.fragment(request, "_reply.html",
                                       lambda form, messages: self.reply_context(messages))

        @r.post("/playground/whatif")
        async def whatif_fragment(request: Request) -> Response:
            return await self.fragment(request, "_whatif.html", self.what_if_context)

        # audit browser ---------------------------------------------------------------------

        def audit_unavailable(request: Request) -> Response | None:
            if cfg.audit is None:
                return self.page(request, "audit.html", nav="audit", unavailable=(
                    "This console reads no audit log. Start it with --audit-db FILE (or a "
                    "postgresql:// URL)."))
            return None

        @r.get("/audit")
        async def audit_page(request: Request) -> Response:
            self.who(request)
            missing = audit_unavailable(request)
            if missing is not None:
                return missing
            assert cfg.audit is not None
            params = list(request.query_params.multi_items())
            query = dict(params)
            context: dict[str, Any] = {"nav": "audit", "source": cfg.audit_source,
                                       "params": params, "query": query}
            try:
                where = audit_filter(params)
                unit: BucketUnit = "day" if query.get("unit") == "day" else "hour"
                before = _int(query.get("before"))
                after = _int(query.get("after"))
                facets = await _thread(cfg.audit.facets)
                page = await _thread(cfg.audit.page, where, before, after, PAGE_SIZE)
                buckets = await _thread(cfg.audit.buckets, where, unit)
            except (InputError, AuditError) as e:
                return self.page(request, "audit.html", 422 if isinstance(e, InputError)
                                 else 503, **context, error=str(e), where=AuditFilter(),
                                 facets=None, page=None, charts=[])
            return self.page(request, "audit.html", **context, where=where, facets=facets,
                             page=page, unit=unit, charts=_audit_charts(buckets, unit),
                             filter_qs=filter_query(where),
                             since_value=_input_time(where.since),
                             until_value=_input_time(where.until),
                             presets=_time_presets(facets.last))

        @r.get("/audit/export.{fmt}")
        async def audit_export(request: Request, fmt: str) -> Response:
            self.who(request)
            if cfg.audit is None:
                return Response("no audit log", 404)
            if fmt not in ("csv", "jsonl"):
                return Response("export as .csv or .jsonl", 404)
            try:
                where = audit_filter(list(request.query_params.multi_items()))
            except InputError as e:
                return Response(str(e), 422, media_type="text/plain")
            query = cfg.audit

            def lines() -> Iterator[str]:
                batch: list[Any] = []
                first = True
                for record in query.records(where):
                    batch.append(record)
                    if len(batch) >= 500:
                        yield _export_chunk(batch, fmt, header=first)
                        first, batch = False, []
                if batch or first:
                    yield _export_chunk(batch, fmt, header=first)

            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            media = "text/csv" if fmt == "csv" else "application/x-ndjson"
            return StreamingResponse(lines(), media_type=f"{media}; charset=utf-8", headers={
                "content-disposition": f'attachment; filename="oyster-audit-{stamp}.{fmt}"'})

        @r.get("/audit/row/{request_id}")
        async def audit_row(request: Request, request_id: str) -> Response:
            self.who(request)
            missing = audit_unavailable(request)
            if missing is not None:
                return missing
            assert cfg.audit is not None
            try:
                record = await _thread(cfg.audit.record, request_id)
            except AuditError as e:
                return self.page(request, "denied.html", 503, reason=str(e), can_login=False)
            if record is None:
                return self.page(request, "audit_row.html", 404, nav="audit", record=None,
                                 request_id=request_id)
            conversation = (json.dumps([m.model_dump() for m in record.messages],
                                       ensure_ascii=False, indent=1)
                            if record.messages else None)
            return self.page(request, "audit_row.html", nav="audit", record=record,
                             chart=(charts.utility_chart(record.utilities, record.strategy)
                                    if record.strategy else None),
                             conversation=conversation, back=request.headers.get("referer"))

        # policy --------------------------------------------------------------------------------

        @r.get("/policy")
        async def policy_page(request: Request) -> Response:
            self.who(request)
            return self.page(request, "policy.html", nav="policy", policy=self.policy,
                             source=cfg.policy_source, fingerprint=self.policy.fingerprint(),
                             draft=_DRAFT.format(beta=self.policy.game.beta),
                             filename="edited-policy.yaml", result=None)

        @r.post("/policy/validate")
        async def policy_validate(request: Request) -> Response:
            self.who(request)
            form = await self.form(request)
            filename = (form.get("filename") or "edited-policy.yaml").strip()
            text = form.get("policy", "")
            try:
                checked = policy_from_text(text, filename)
                result: dict[str, Any] = {"ok": True, "label": checked.label,
                                          "categories": len(checked.taxonomy.categories),
                                          "changes": policy_changes(self.policy, checked)}
            except PolicyError as e:
                result = {"ok": False, "problems": e.problems or [(filename, "", str(e))]}
            fragment = bool(request.headers.get(FRAGMENT_HEADER))
            return self.page(request, "_validation.html" if fragment else "policy.html",
                             200 if result["ok"] else 422, nav="policy", policy=self.policy,
                             source=cfg.policy_source, fingerprint=self.policy.fingerprint(),
                             draft=text, filename=filename, result=result)

        # benchmark reports -------------------------------------------------------------------

        @r.get("/reports")
        async def reports_page(request: Request) -> Response:
            self.who(request)
            folder = cfg.reports_dir
            reports = await _thread(list_reports, folder) if folder and folder.is_dir() else []
            return self.page(request, "reports.html", nav="reports", folder=folder,
                             folder_ok=bool(folder and folder.is_dir()), reports=reports)

        async def find_report(request: Request, name: str) -> Path | None:
            self.who(request)
            folder = cfg.reports_dir
            return await _thread(report_path, folder, name) if folder else None

        @r.get("/reports/view/{name:path}")
        async def report_view(request: Request, name: str) -> Response:
            if await find_report(request, name) is None:
                return self.page(request, "denied.html", 404, nav="reports",
                                 reason=f"no report {name!r} here", can_login=False)
            return self.page(request, "report_view.html", nav="reports", name=name)

        @r.get("/reports/file/{name:path}")
        async def report_file(request: Request, name: str) -> Response:
            found = await find_report(request, name)
            if found is None:
                return Response("no such report", 404, media_type="text/plain")
            return FileResponse(found, media_type="text/html; charset=utf-8")


_DRAFT = """base: default
name: my-policy
game:
  beta: {beta}
"""


def _local(target: str) -> str:
    """Only console paths are followed after signing in (no open redirect)."""
    return target if target.startswith(f"{PREFIX}/") and "//" not in target \
        else f"{PREFIX}/playground"


def _int(raw: str | None) -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"page cursor {raw!r} is not a number") from None


async def _thread(fn: Callable[..., Any], *args: Any) -> Any:
    import anyio

    return await anyio.to_thread.run_sync(lambda: fn(*args))


def _export_chunk(records: list[Any], fmt: str, header: bool) -> str:
    buffer = io.StringIO()
    write_records(records, buffer, fmt)  # type: ignore[arg-type]
    text = buffer.getvalue()
    if fmt == "csv" and not header:  # the header only once, at the top of the file
        text = text.split("\n", 1)[1]
    return text


def _time_presets(last: float | None) -> list[tuple[str, str]]:
    """Quick ranges ending at the log's last row (so an old log still shows something)."""
    if last is None:
        return []
    end = last + 1
    return [(label, _input_time(end - seconds))
            for label, seconds in (("last hour", 3600), ("last 24 h", 86400),
                                   ("last 7 days", 7 * 86400), ("last 30 days", 30 * 86400))]


def _audit_charts(buckets: list[Any], unit: str) -> list[tuple[str, Any]]:
    if not buckets:
        return []
    starts = [b.start for b in buckets]
    refusal = [b.refusals / b.decisions if b.decisions else None for b in buckets]
    return [
        ("Strategy mix", charts.series_chart(
            starts, {s: [b.strategies.get(s, 0) for b in buckets] for s in STRATEGIES}, unit,
            f"Decisions per {unit} by strategy", colours=charts.STRATEGY_COLOURS)),
        ("Refusal rate", charts.series_chart(
            starts, {"refuse": refusal}, unit, f"Share of decisions per {unit} that refuse",
            value_format="{:.0%}", colours={"refuse": charts.STRATEGY_COLOURS["refuse"]},
            stacked=False)),
        ("Attacks detected", charts.series_chart(
            starts, {"with attacks": [b.with_attacks for b in buckets]}, unit,
            f"Decisions per {unit} with at least one attack detected",
            colours={"with attacks": "#CC79A7"})),
        ("Regenerations and fallbacks", charts.series_chart(
            starts, {"regenerated": [b.regenerated for b in buckets],
                     "fallback": [b.fallbacks for b in buckets]}, unit,
            f"Replies per {unit} regenerated or replaced by a fallback",
            colours={"regenerated": "#E69F00", "fallback": "#D55E00"})),
        ("p95 latency", charts.series_chart(
            starts, {"p95 ms": [b.p95_latency_ms for b in buckets]}, unit,
            f"95th percentile of decided requests' latency per {unit} (ms)",
            value_format="{:.0f}", colours={"p95 ms": "#56B4E9"}, stacked=False)),
        ("Requests without a decision", charts.series_chart(
            starts, {"rejected or failed": [b.undecided for b in buckets]}, unit,
            f"Requests per {unit} rejected (auth, size, shape, rate limit), failed or "
            "cancelled before a decision", colours={"rejected or failed": "#999999"})),
    ]


__all__ = ["ConsoleConfig", "audit_filter", "create_console_app", "filter_query",
           "mount_console"]
