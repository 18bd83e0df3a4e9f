"""OpenTelemetry traces of Oyster's stages: one span per stage, with `oyster.*` attributes.

| span | where | attributes |
|---|---|---|
| `oyster.decide` | `Engine.decide` | the decision (below) |
| `oyster.assess` | the assessor | level, categories, attacks, form, language |
| `oyster.game` | belief + Stackelberg choice | user type, strategy, utility |
| `oyster.chain` | the reasoning chain | strategy |
| `oyster.generate` | each backend call (or a whole stream) | backend, attempt, tokens |
| `oyster.verify` | each verifier check | passed, problems, final |
| `oyster.audit` | waiting for the audit row's commit | backend, request id, status |
| `POST /v1/...` | the proxy, per request (a SERVER span) | HTTP, request id, key, outcome, the decision |

Message and reply text are never attributes unless the policy's `audit.log_message_text`
is on (then `oyster.message` on `oyster.assess`). Without a configured tracer provider
every span is OpenTelemetry's no-op; without the `opentelemetry-api` package, ours.

`configure("otlp" | "console" | "none")` installs the SDK for a process (`oyster serve
--traces`); the standard `OTEL_*` variables (endpoint, headers, service name) apply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

try:  # the API is small and optional: without it every span is a no-op
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - the serve extra installs it
    _trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from oyster.assess.base import Assessment
    from oyster.decision import Decision

Exporter = Literal["otlp", "console", "none"]
EXPORTERS: tuple[Exporter, ...] = ("otlp", "console", "none")
TRACER_NAME = "oyster"
AttributeValue = str | bool | int | float | Sequence[str]


class _NoSpan:
    """Stands in for a span when OpenTelemetry is not installed."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        pass

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        pass

    def is_recording(self) -> bool:
        return False

    def record_exception(self, exception: BaseException) -> None:
        pass

    def set_status(self, status: Any) -> None:
        pass

    def end(self) -> None:
        pass


_NO_SPAN = _NoSpan()


def _tracer() -> Any:
    # a proxy tracer: it follows whatever provider is installed later
    return _trace.get_tracer(TRACER_NAME) if _trace is not None else None


_TRACER = _tracer()


@contextmanager
def span(name: str, attributes: Mapping[str, AttributeValue] | None = None,
         *, server: bool = False, parent: Any = None) -> Iterator[Any]:
    """A span around a stage, current inside the block. `parent` is an OpenTelemetry
    context (e.g. extracted from a request's `traceparent`)."""
    if _TRACER is None:
        yield _NO_SPAN
        return
    kind = _trace.SpanKind.SERVER if server else _trace.SpanKind.INTERNAL
    with _TRACER.start_as_current_span(name, context=parent, kind=kind,
                                       attributes=dict(attributes or {})) as s:
        yield s


@contextmanager
def request_span(name: str, attributes: Mapping[str, AttributeValue],
                 headers: Mapping[str, str]) -> Iterator[Any]:
    """The span of one HTTP request: the server's own when it made one (FastAPI's native
    telemetry does), else a new SERVER span joining the caller's `traceparent`."""
    current = current_span()
    if current.is_recording() and getattr(current, "kind", None) == _trace.SpanKind.SERVER:
        current.set_attributes(dict(attributes))
        yield current
        return
    with span(name, attributes, server=True, parent=extract_context(headers)) as s:
        yield s


def current_span() -> Any:
    return _trace.get_current_span() if _trace is not None else _NO_SPAN


def extract_context(headers: Mapping[str, str]) -> Any:
    """The W3C trace context a caller sent (`traceparent`), so our spans join its trace."""
    if _trace is None or "traceparent" not in headers:
        return None
    from opentelemetry.propagate import extract

    return extract(dict(headers))


async def traced_stream(name: str, stream: AsyncIterator[str],
                        attributes: Mapping[str, AttributeValue] | None = None
                        ) -> AsyncIterator[str]:
    """`stream`, with one span from its first piece to its end (or until it is closed).
    The span is never made current: a generator's steps may run in different contexts."""
    s: Any = _TRACER.start_span(name, attributes=dict(attributes or {})) if _TRACER else _NO_SPAN
    pieces = chars = 0
    try:
        async for piece in stream:
            pieces += 1
            chars += len(piece)
            yield piece
    except BaseException as e:
        if _trace is not None and not isinstance(e, GeneratorExit):
            s.record_exception(e)
            s.set_status(_trace.Status(_trace.StatusCode.ERROR, type(e).__name__))
        raise
    finally:
        s.set_attributes({"oyster.stream.pieces": pieces, "oyster.stream.chars": chars})
        s.end()
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def decision_attributes(decision: Decision) -> dict[str, AttributeValue]:
    """The decision as span attributes (no text: ids, labels and numbers only)."""
    likely = max(decision.user_type, key=decision.user_type.__getitem__)
    return {"oyster.level": decision.level, "oyster.strategy": decision.strategy,
            "oyster.categories": [c.id for c in decision.categories],
            "oyster.attacks": list(decision.attacks), "oyster.user_type": likely,
            "oyster.user_type.p": decision.user_type[likely],
            "oyster.aggressive": decision.aggressive, "oyster.form": decision.form,
            "oyster.language": decision.language, "oyster.policy": decision.policy}


def assessment_attributes(assessment: Assessment) -> dict[str, AttributeValue]:
    return {"oyster.level": assessment.level, "oyster.assessor": assessment.assessor,
            "oyster.categories": [c.id for c in assessment.categories if c.id != "none"],
            "oyster.attacks": sorted({a.technique for a in assessment.attacks}),
            "oyster.form": assessment.form, "oyster.aggressive": assessment.aggressive,
            "oyster.language": assessment.language,
            "oyster.confidence": round(assessment.confidence, 4)}


# -- setting up a process --------------------------------------------------------------------

def configure(exporter: Exporter, service_name: str = "oyster") -> Any:
    """Install a tracer provider that exports spans in batches; returns it (None for
    `none`). `otlp` sends OTLP over HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT` (default
    http://localhost:4318); `console` prints each span as JSON."""
    if exporter == "none":
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError as e:
        from oyster.errors import InputError

        raise InputError("--traces needs opentelemetry-sdk (pip install "
                         "'oyster-csa[telemetry]')") from e
    if exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as e:
            from oyster.errors import InputError

            raise InputError("--traces otlp needs opentelemetry-exporter-otlp-proto-http "
                             "(pip install 'oyster-csa[telemetry]')") from e
        span_exporter: Any = OTLPSpanExporter()
    else:
        span_exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    _trace.set_tracer_provider(provider)
    return provider


class Recorder:
    """For tests and demos: keeps the spans that finish while it is open, in memory."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        self.exporter = InMemorySpanExporter()
        self.active = True

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def clear(self) -> None:
        self.exporter.clear()

    def close(self) -> None:
        self.active = False
        self.exporter.clear()


def record_spans() -> Recorder:
    """Start keeping finished spans in memory (installing an SDK provider if none is)."""
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

    recorder = Recorder()

    class _Processor(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            if recorder.active:
                recorder.exporter.export([span])

    provider = _trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        _trace.set_tracer_provider(provider)
    provider.add_span_processor(_Processor())
    return recorder
