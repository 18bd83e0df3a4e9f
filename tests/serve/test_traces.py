"""OpenTelemetry: one span per stage of a proxied request, `oyster.*` attributes, the
caller's trace joined, and no message text unless the policy allows it."""

from __future__ import annotations

import os
import time

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from oyster import telemetry
from oyster.engine import Engine

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
USER = [{"role": "user", "content": "How do I kill a stuck process on Linux?"}]


@pytest.fixture
def spans():
    recorder = telemetry.record_spans()
    yield recorder
    recorder.close()


def _ended(spans, name: str, trace_id: str | None = None) -> list:
    """Spans end just after their response is sent: wait for the request's to end (the
    fake upstream's span has the same name, in a trace of its own)."""
    def done() -> bool:
        return any(s.name == name and (trace_id is None
                                       or format(s.context.trace_id, "032x") == trace_id)
                   for s in spans.spans())

    deadline = time.monotonic() + 5
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)
    return spans.spans()


def _request_spans(spans, start_proxy, engine=None):
    proxy = start_proxy(policy_engine=engine)
    spans.clear()
    r = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "m", "messages": USER},
                   headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
    assert r.status_code == 200
    mine = [s for s in _ended(spans, "POST /v1/chat/completions", TRACE_ID)
            if format(s.context.trace_id, "032x") == TRACE_ID]
    return r, {s.name: s for s in mine}, mine


def test_a_request_has_a_span_per_stage_in_the_callers_trace(spans, start_proxy):
    r, by_name, mine = _request_spans(spans, start_proxy)
    assert {"POST /v1/chat/completions", "oyster.decide", "oyster.assess", "oyster.game",
            "oyster.chain", "oyster.generate", "oyster.verify", "oyster.audit"} <= set(by_name)
    root = by_name["POST /v1/chat/completions"]
    ids = {s.context.span_id: s for s in mine}
    for s in mine:  # every stage hangs under the request span, which hangs under the caller
        parent = s
        while parent.parent is not None and parent.parent.span_id in ids:
            parent = ids[parent.parent.span_id]
        assert parent is root
    assert format(root.parent.span_id, "016x") == "00f067aa0ba902b7"
    attributes = root.attributes
    assert attributes["oyster.request_id"] == r.json()["oyster"]["request_id"]
    assert (attributes["oyster.level"], attributes["oyster.strategy"],
            attributes["oyster.outcome"]) == ("R0", "answer", "passed")
    assert attributes["http.response.status_code"] == 200
    assert by_name["oyster.game"].attributes["oyster.strategy"] == "answer"
    assert by_name["oyster.verify"].attributes["oyster.verified"] is True
    assert by_name["oyster.audit"].attributes["oyster.audit.backend"] == "sqlite"
    text = USER[0]["content"]
    assert not any(text in str(v) for s in mine for v in s.attributes.values())


def test_message_text_is_an_attribute_only_where_the_policy_allows(spans, start_proxy,
                                                                    tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("base: default\nname: verbose\naudit: {log_message_text: true}\n")
    _, by_name, _ = _request_spans(spans, start_proxy, Engine(str(policy), "lexicon"))
    assert by_name["oyster.assess"].attributes["oyster.message"] == USER[0]["content"]


def test_a_rejected_request_is_traced_too(spans, start_proxy):
    proxy = start_proxy(keys=True)
    spans.clear()
    httpx.post(f"{proxy.url}/v1/decide", json={"messages": USER})
    [root] = [s for s in _ended(spans, "POST /v1/decide") if s.name == "POST /v1/decide"]
    assert root.attributes["oyster.outcome"] == "rejected"
    assert root.attributes["oyster.error"] == "missing_api_key"
    assert root.attributes["http.response.status_code"] == 401


def test_serve_exports_otlp_to_a_collector(tmp_path, fake_upstream):
    """`oyster serve --traces otlp` as a process, sending OTLP/HTTP protobuf to a receiver
    on 127.0.0.1 that decodes it as a collector would."""
    import subprocess
    import sys

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from oyster.serve.testing import ServerThread, free_port

    received: list[tuple[str, dict[str, str]]] = []
    collector = FastAPI()

    @collector.post("/v1/traces")
    async def traces(request: Request) -> Response:
        export = ExportTraceServiceRequest.FromString(await request.body())
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                for s in scope.spans:
                    received.append((s.name, {a.key: str(a.value) for a in s.attributes}))
        return Response(status_code=200)

    port = free_port()
    with ServerThread(collector) as otlp:
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
               "OTEL_BSP_SCHEDULE_DELAY": "100"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "oyster.cli", "serve", "--port", str(port), "--upstream",
             fake_upstream.spec(), "--assessor", "lexicon", "--traces", "otlp",
             "--audit-db", str(tmp_path / "audit.db"), "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{url}/healthz", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline and proc.poll() is None
                    time.sleep(0.2)
            r = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "messages": USER})
            assert r.status_code == 200
            deadline = time.monotonic() + 20
            while not any(n == "oyster.audit" for n, _ in received):
                assert time.monotonic() < deadline, received
                time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    names = {n for n, _ in received}
    assert {"oyster.assess", "oyster.game", "oyster.chain", "oyster.generate",
            "oyster.verify", "oyster.audit"} <= names
    [root] = [a for n, a in received if n == "POST /v1/chat/completions"]
    assert 'string_value: "answer"' in root["oyster.strategy"]
