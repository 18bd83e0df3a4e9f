"""API keys, request size and shape limits, and the per-key rate limit, over real HTTP; a
rejected request gets an audit row with its true status and no decision."""

from __future__ import annotations

import httpx
import openai
import pytest

USER = [{"role": "user", "content": "What is a good name for a cat?"}]


def test_keys_are_required_checked_revocable_and_stored_hashed(start_proxy):
    proxy = start_proxy("say=cat_name", keys=True)
    new = proxy.keys.add("team-a")

    missing = httpx.post(f"{proxy.url}/v1/chat/completions",
                         json={"model": "m", "messages": USER})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError, match="invalid or revoked"):
        proxy.client("oys-not-a-real-key").chat.completions.create(model="m", messages=USER)

    proxy.client(new.key).chat.completions.create(model="m", messages=USER)
    proxy.keys.revoke("team-a")
    with pytest.raises(openai.AuthenticationError):
        proxy.client(new.key).chat.completions.create(model="m", messages=USER)
    rows = proxy.audit_rows()
    assert [(r.status, r.outcome, r.key_id) for r in rows] == [
        (401, "rejected", None), (401, "rejected", None), (200, "passed", "team-a"),
        (401, "rejected", None)]
    assert [r.error.split(":")[0] for r in rows if r.status == 401] == [
        "missing_api_key", "invalid_api_key", "invalid_api_key"]
    assert all(r.level is None and r.strategy is None for r in rows if r.status == 401)
    assert missing.headers["x-oyster-request-id"] == rows[0].id
    assert new.key.encode() not in proxy.keys.path.read_bytes()


def test_body_over_the_size_limit_is_413(start_proxy):
    proxy = start_proxy(limits={"max_request_bytes": 2_000})
    with pytest.raises(openai.APIStatusError) as err:
        proxy.client().chat.completions.create(
            model="m", messages=[{"role": "user", "content": "a " * 2_000}])
    assert err.value.status_code == 413
    assert err.value.response.json()["error"]["code"] == "request_too_large"
    [row] = proxy.audit_rows()
    assert (row.status, row.outcome, row.level) == (413, "rejected", None)
    assert row.error.startswith("request_too_large:")


@pytest.mark.parametrize(("limits", "messages", "code"), [
    ({"max_messages": 3}, USER * 4, "too_many_messages"),
    ({"max_message_chars": 100}, [{"role": "user", "content": "x" * 101}], "message_too_long"),
    ({}, [{"role": "wizard", "content": "hi"}], "invalid_messages"),
    ({}, [{"role": "assistant", "content": "hi"}], "invalid_messages"),
])
def test_bad_or_oversized_conversations_are_422(start_proxy, limits, messages, code):
    proxy = start_proxy(limits=limits)
    with pytest.raises(openai.UnprocessableEntityError) as err:
        proxy.client().chat.completions.create(model="m", messages=messages)
    assert err.value.response.json()["error"]["code"] == code
    [row] = proxy.audit_rows()
    assert (row.status, row.outcome, row.error.split(":")[0]) == (422, "rejected", code)


def test_malformed_json_and_missing_fields_get_a_json_error(start_proxy):
    proxy = start_proxy()
    r = httpx.post(f"{proxy.url}/v1/chat/completions", content=b"{not json",
                   headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "m"})
    assert r.status_code == 422 and "messages" in r.json()["error"]["message"]
    r = httpx.post(f"{proxy.url}/v1/decide", json={"messages": "hello"})
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request_error"


def test_rate_limit_is_per_key(start_proxy):
    proxy = start_proxy(keys=True, rate_limit_per_minute=2)
    a, b = proxy.keys.add("a").key, proxy.keys.add("b").key
    for _ in range(2):
        proxy.client(a).chat.completions.create(model="m", messages=USER)
    with pytest.raises(openai.RateLimitError) as err:
        proxy.client(a).chat.completions.create(model="m", messages=USER)
    assert int(err.value.response.headers["retry-after"]) >= 1
    assert err.value.response.json()["error"]["code"] == "rate_limit_exceeded"
    proxy.client(b).chat.completions.create(model="m", messages=USER)  # b has its own bucket
    assert [(r.key_id, r.status) for r in proxy.audit_rows()] == [
        ("a", 200), ("a", 200), ("a", 429), ("b", 200)]
