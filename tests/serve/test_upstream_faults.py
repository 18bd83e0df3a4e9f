"""Upstream faults (timeout, connection refused, 5xx, malformed JSON, a stream cut short)
under both fail modes, played by the real fake upstream over HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

from oyster.respond import fallback_reply
from oyster.serve.testing import free_port

USER = [{"role": "user", "content": "What is a good name for a cat?"}]

FAULTS = {
    "timeout": ("hang", "no reply within"),
    "5xx": ("status=503", "HTTP 503"),
    "garbage": ("garbage", "reply"),
    "refused": (None, "cannot reach"),
}


def _proxy(start_proxy, fault: str, fail_mode: str, **settings):
    script, _ = FAULTS[fault]
    upstream = f"openai:ok@http://127.0.0.1:{free_port()}/v1" if script is None else None
    return start_proxy(script or "ok", upstream=upstream, fail_mode=fail_mode,
                       upstream_timeout_s=1.0, **settings)


@pytest.mark.parametrize("fault", FAULTS)
def test_fail_closed_answers_with_the_strategy_fallback(start_proxy, engine, fault):
    proxy = _proxy(start_proxy, fault, "closed")
    raw = proxy.client().chat.completions.with_raw_response.create(model="m", messages=USER)
    completion = raw.parse()
    oyster = completion.model_extra["oyster"]
    assert raw.headers["x-oyster-outcome"] == oyster["outcome"] == "upstream_error"
    assert completion.choices[0].message.content == fallback_reply(engine.decide(USER),
                                                                   engine.policy)
    assert completion.usage is not None and completion.usage.total_tokens == 0  # none made
    [row] = proxy.audit_rows()
    assert row.outcome == "upstream_error" and row.fallback_used and row.status == 200
    assert FAULTS[fault][1] in (row.upstream_error or "")
    metrics = httpx.get(f"{proxy.url}/metrics").text
    kind = "timeout" if fault == "timeout" else "error"
    assert f'oyster_upstream_errors_total{{kind="{kind}"}} 1.0' in metrics


@pytest.mark.parametrize("fault", FAULTS)
def test_fail_open_passes_the_upstream_error_through(start_proxy, fault):
    proxy = _proxy(start_proxy, fault, "open")
    with pytest.raises(openai.APIStatusError) as err:
        proxy.client().chat.completions.create(model="m", messages=USER)
    status = 504 if fault == "timeout" else 502
    assert err.value.status_code == status
    # the client learns the kind of failure; the upstream's own text (its address) stays in
    # the audit log
    error = err.value.response.json()["error"]
    assert error["code"] == ("upstream_timeout" if fault == "timeout" else "upstream_failed")
    assert "127.0.0.1" not in err.value.response.text
    assert err.value.response.headers["x-oyster-strategy"] == "answer"
    [row] = proxy.audit_rows()
    assert (row.outcome, row.status, row.fallback_used) == ("upstream_error", status, False)
    assert FAULTS[fault][1] in (row.upstream_error or "")


@pytest.mark.parametrize("fault", ["timeout", "5xx", "garbage", "refused"])
def test_streamed_faults_before_the_first_token(start_proxy, engine, fault):
    closed = _proxy(start_proxy, fault, "closed")
    chunks = list(closed.client().chat.completions.create(model="m", messages=USER,
                                                          stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == fallback_reply(engine.decide(USER), engine.policy)
    assert chunks[-1].model_extra["oyster"]["outcome"] == "upstream_error"

    opened = _proxy(start_proxy, fault, "open")
    with pytest.raises(openai.APIStatusError) as err:  # still a plain HTTP error
        opened.client().chat.completions.create(model="m", messages=USER, stream=True)
    assert err.value.status_code in (502, 504)
    assert [r.outcome for r in closed.audit_rows() + opened.audit_rows()] == \
        ["upstream_error", "upstream_error"]


def test_stream_cut_mid_reply(start_proxy, engine):
    fallback = fallback_reply(engine.decide(USER), engine.policy)
    closed = start_proxy("ok+cut=6", stream_check_chars=10)
    chunks = list(closed.client().chat.completions.create(model="m", messages=USER,
                                                          stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.startswith("Here is a short") and text.endswith("\n\n" + fallback)
    [row] = closed.audit_rows()
    assert row.outcome == "upstream_error" and row.fallback_used

    opened = start_proxy("ok+cut=6", stream_check_chars=10, fail_mode="open")
    received = []
    with pytest.raises(openai.APIError, match="upstream model failed"):
        for c in opened.client().chat.completions.create(model="m", messages=USER,
                                                         stream=True):
            received.append(c.choices[0].delta.content or "")
    assert "".join(received).startswith("Here is a short")
    [row] = opened.audit_rows()
    assert row.outcome == "upstream_error" and row.status == 502 and not row.fallback_used
