"""No input kills the proxy: the seeded hostile corpus (tests/hostile.py) as request bodies
to a real uvicorn server, over one keep-alive client; and the proxy's schema fuzzed by
schemathesis."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parents[1]))
from hostile import corpus


def test_proxy_answers_every_hostile_body_with_json_and_keeps_the_connection(start_proxy):
    proxy = start_proxy(rate_limit_per_minute=100_000)
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=proxy.url, timeout=60) as client:
        for i, case in enumerate(corpus(seed=5, n=120)):
            route = "/v1/chat/completions" if i % 2 == 0 else "/v1/decide"
            headers = {"content-type": case.content_type} if case.content_type else {}
            r = client.post(route, content=case.body, headers=headers)
            statuses[r.status_code] += 1
            assert r.status_code < 500, (case.kind, r.status_code, r.text[:300])
            if r.status_code >= 400:
                assert r.headers["content-type"] == "application/json"
                assert r.json()["error"]["message"]
        # still usable afterwards, on the same client
        ok = client.post("/v1/chat/completions", json={
            "model": "m", "messages": [{"role": "user", "content": "hello"}]})
        assert ok.status_code == 200
    assert statuses[200] and statuses[422] and statuses[413] and statuses[415]


def test_schema_driven_fuzzing_finds_no_5xx_and_only_json_errors(start_proxy):
    """schemathesis, from the proxy's own OpenAPI document, positive and negative examples
    for every operation (bounded: 10 each), against the live server with a full-scope key."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable

    proxy = start_proxy(keys=True, rate_limit_per_minute=100_000)
    auth = {"authorization": f"Bearer {proxy.keys.add('fuzz', ['inspect', 'admin']).key}"}
    schema = schemathesis.openapi.from_dict(httpx.get(f"{proxy.url}/openapi.json",
                                                      headers=auth).json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/chat/completions", "POST /v1/decide", "GET /v1/models", "GET /metrics",
        "GET /healthz"}
    seen: Counter[int] = Counter()
    for op in operations:
        for mode in schemathesis.GenerationMode:
            @settings(max_examples=10, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def call(case: schemathesis.Case) -> None:
                response = case.call(base_url=proxy.url, headers=auth, timeout=60)
                seen[response.status_code] += 1
                assert response.status_code < 500, (case.method, case.path, response.text)
                if response.status_code >= 400:
                    assert response.headers["content-type"] == ["application/json"]
                    assert response.json()["error"]["message"]

            try:
                call()
            except Unsatisfiable:  # nothing to make invalid (a GET without parameters)
                assert mode == schemathesis.GenerationMode.NEGATIVE
    assert seen[200] and sum(n for status, n in seen.items() if status >= 400)


def test_a_bug_answers_json_500_and_the_connection_survives(start_proxy, engine):
    from oyster.assess.lexicon import LexiconAssessor
    from oyster.engine import Engine

    class Broken(LexiconAssessor):
        def assess(self, messages):
            if "boom" in messages[-1].content:
                raise RuntimeError("a bug in an assessor")
            return super().assess(messages)

    proxy = start_proxy(policy_engine=Engine(engine.policy, Broken(engine.policy)))
    with httpx.Client(base_url=proxy.url) as client:
        r = client.post("/v1/decide", json={"messages": [{"role": "user", "content": "boom"}]})
        assert r.status_code == 500 and r.headers["content-type"] == "application/json"
        assert r.json()["error"] == {"message": "the proxy could not complete the request",
                                     "type": "server_error", "code": "internal_error"}
        ok = client.post("/v1/decide", json={"messages": [{"role": "user", "content": "hi"}]})
        assert ok.status_code == 200
    assert 'oyster_requests_total{route="/v1/decide",status="500"} 1.0' in proxy.metrics()
