"""Least exposure, over real HTTP: a caller gets the reply and the strategy; the decision
needs the `inspect` scope; operational routes need keys; failed authentication is limited
per client address and counted; the upstream's address never leaves the server."""

from __future__ import annotations

import httpx
import openai
import pytest

USER = [{"role": "user", "content": "What is a good name for a cat?"}]
DECISION_HEADERS = {"x-oyster-level", "x-oyster-outcome", "x-oyster-request-id"}


def test_a_default_caller_gets_the_reply_and_the_strategy_only(start_proxy, fake_upstream):
    proxy = start_proxy("say=cat_name", keys=True, open_scopes=[])
    plain = proxy.keys.add("app").key
    raw = proxy.client(plain).chat.completions.with_raw_response.create(model="m",
                                                                         messages=USER)
    body = raw.http_response.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert "Luna" in body["choices"][0]["message"]["content"]  # the model's own reply
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 24, "total_tokens": 34}
    assert raw.headers["x-oyster-strategy"] == "answer"
    assert not DECISION_HEADERS & set(raw.headers)
    assert fake_upstream.url not in raw.http_response.text

    chunks = list(proxy.client(plain).chat.completions.create(model="m", messages=USER,
                                                              stream=True))
    assert all("oyster" not in (c.model_extra or {}) for c in chunks)

    r = httpx.post(f"{proxy.url}/v1/decide", json={"messages": USER},
                   headers={"authorization": f"Bearer {plain}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
    # the audit log still has everything, the refused decide request too
    assert [(row.strategy, row.outcome, row.status) for row in proxy.audit_rows()] == [
        ("answer", "passed", 200), ("answer", "passed", 200), (None, "rejected", 403)]


def test_inspect_scope_sees_the_decision(start_proxy):
    proxy = start_proxy("say=cat_name", keys=True, open_scopes=[])
    key = proxy.keys.add("analyst", ["inspect"]).key
    raw = proxy.client(key).chat.completions.with_raw_response.create(model="m", messages=USER)
    oyster = raw.parse().model_extra["oyster"]
    assert oyster["decision"]["strategy"] == "answer" and oyster["outcome"] == "passed"
    assert set(raw.headers) >= DECISION_HEADERS
    r = httpx.post(f"{proxy.url}/v1/decide", json={"messages": USER},
                   headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.json()["oyster"]["decision"]["level"] == "R0"


def test_operational_routes_need_keys_when_auth_is_on(start_proxy, fake_upstream):
    proxy = start_proxy(keys=True)
    plain = {"authorization": f"Bearer {proxy.keys.add('app').key}"}
    admin = {"authorization": f"Bearer {proxy.keys.add('ops', ['admin']).key}"}
    # liveness for anyone, details for admin keys only, never the upstream's address
    assert httpx.get(f"{proxy.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{proxy.url}/healthz", headers=plain).json() == {"status": "ok"}
    detail = httpx.get(f"{proxy.url}/healthz", headers=admin)
    assert detail.json()["upstream"] == "openai:ok" and fake_upstream.url not in detail.text
    for path, needs in (("/metrics", "admin"), ("/openapi.json", None)):
        assert httpx.get(f"{proxy.url}{path}").status_code == 401
        with_plain = httpx.get(f"{proxy.url}{path}", headers=plain)
        assert with_plain.status_code == (403 if needs else 200), path
        assert httpx.get(f"{proxy.url}{path}", headers=admin).status_code == 200
    assert httpx.post(f"{proxy.url}/v1/decide", json={"messages": USER}).status_code == 401


def test_failed_authentication_is_limited_per_address_and_counted(start_proxy):
    proxy = start_proxy(keys=True, auth_failures_per_minute=3)
    good = proxy.keys.add("app").key
    with httpx.Client(base_url=proxy.url) as client:
        codes = [client.post("/v1/chat/completions", json={"model": "m", "messages": USER},
                             headers={"authorization": f"Bearer oys-guess-{i}"}).status_code
                 for i in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        blocked = client.post("/v1/chat/completions", json={"model": "m", "messages": USER},
                              headers={"authorization": f"Bearer {good}"})
        # from this address even a valid key waits: no key is checked while blocked
        assert blocked.status_code == 429
        assert blocked.json()["error"]["code"] == "too_many_auth_failures"
        assert int(blocked.headers["retry-after"]) >= 1
    metrics = proxy.metrics()
    assert 'oyster_auth_failures_total{reason="invalid"} 3.0' in metrics
    assert 'oyster_auth_failures_total{reason="blocked"} 3.0' in metrics
    assert 'oyster_rejected_requests_total{code="too_many_auth_failures",status="429"} 3.0' \
        in metrics


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors_reach_clients_as_kinds_only(start_proxy, fake_upstream, stream):
    proxy = start_proxy("status=500", fail_mode="open")
    with pytest.raises(openai.APIStatusError) as err:
        proxy.client().chat.completions.create(model="m", messages=USER, stream=stream)
    assert err.value.status_code == 502
    assert fake_upstream.url not in err.value.response.text
    assert err.value.response.json()["error"]["message"] == "the upstream model failed"
