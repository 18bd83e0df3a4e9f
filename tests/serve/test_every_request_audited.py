"""Every request to a decision endpoint leaves exactly one audit row with the status the
client got: rejections, upstream failures, internal errors, clients that leave, streams.

Internal errors cannot be caused from outside a correct proxy, so two tests make the
verifier raise (monkeypatched, in this process): the only stand-in in this file.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from oyster.respond.verify import Verifier
from oyster.serve.audit import export

USER = [{"role": "user", "content": "What is a good name for a cat?"}]
CHAT = "/v1/chat/completions"


def _rows_by_id(location: str) -> dict[str, object]:
    return {r.id: r for r in export(location)}


def _wait_rows(location: str, n: int, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        rows = list(export(location))
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_rows_match_requests_under_faults(start_proxy, tmp_path, monkeypatch):
    audit = str(tmp_path / "shared-audit.db")  # three proxies, one audit log
    main = start_proxy("say=cat_name", keys=True, audit=audit, rate_limit_per_minute=6,
                       limits={"max_request_bytes": 4_000})
    failing = start_proxy("status=503", audit=audit, fail_mode="open")
    hanging = start_proxy("hang", audit=audit, upstream_timeout_s=30.0)
    plain = start_proxy(audit=audit)
    key = main.keys.add("k", ["inspect"]).key  # /v1/decide needs the inspect scope
    auth = {"authorization": f"Bearer {key}"}
    seen: list[tuple[str | None, int]] = []  # (request id from the response, status)

    def send(url: str, path: str = CHAT, **kwargs) -> httpx.Response:
        r = httpx.post(url + path, timeout=10, **kwargs)
        seen.append((r.headers.get("x-oyster-request-id"), r.status_code))
        return r

    send(main.url, json={"model": "m", "messages": USER})                       # 401
    send(main.url, json={"model": "m", "messages": USER},
         headers={"authorization": "Bearer oys-wrong"})                          # 401
    send(main.url, json={"model": "m", "messages": [{"role": "user", "content": "a" * 5_000}]},
         headers=auth)                                                           # 413
    send(main.url, content=b"{oops", headers=auth | {"content-type": "application/json"})
    send(main.url, json={"model": "m", "messages": [{"role": "wizard", "content": "hi"}]},
         headers=auth)                                                           # 422
    send(main.url, json={"model": "m", "messages": USER}, headers=auth)          # 200
    send(main.url, "/v1/decide", json={"messages": USER}, headers=auth)          # 200
    send(main.url, json={"model": "m", "messages": USER}, headers=auth)          # 200
    send(main.url, json={"model": "m", "messages": USER}, headers=auth)          # 429
    send(failing.url, json={"model": "m", "messages": USER})                     # 502

    def boom(*args, **kwargs):
        raise RuntimeError("verifier bug")

    with monkeypatch.context() as patch:  # an internal error after the decision
        patch.setattr(Verifier, "check", boom)
        send(plain.url, json={"model": "m", "messages": USER})                  # 500

    with pytest.raises(httpx.ReadTimeout):  # the client gives up on a hung upstream
        httpx.post(hanging.url + CHAT, json={"model": "m", "messages": USER}, timeout=0.5)

    statuses = [s for _, s in seen]
    assert statuses == [401, 401, 413, 422, 422, 200, 200, 200, 429, 502, 500]
    rows = _wait_rows(audit, len(seen) + 1)
    assert len(rows) == len(seen) + 1  # + the client that left
    assert sorted(r.status for r in rows) == sorted([*statuses, 499])
    by_id = {r.id: r for r in rows}
    for rid, status in seen:
        if rid is not None:  # the bare 500 page carries no id
            assert by_id[rid].status == status
    rejected = [r for r in rows if r.outcome == "rejected"]
    assert sorted(r.status for r in rejected) == [401, 401, 413, 422, 422, 429]
    assert all(r.level is None for r in rejected)
    assert [r.key_id for r in rejected if r.status == 429] == ["k"]
    [gone] = [r for r in rows if r.status == 499]
    # the decision was made before the client left, and the wait was cut short
    assert gone.outcome == "cancelled" and gone.level is not None
    assert gone.latency_ms < 5_000


def test_an_internal_error_is_recorded_as_500_with_its_decision(start_proxy, monkeypatch):
    proxy = start_proxy()

    def boom(*args, **kwargs):
        raise RuntimeError("verifier bug")

    monkeypatch.setattr(Verifier, "check", boom)
    r = httpx.post(proxy.url + CHAT, json={"model": "m", "messages": USER})
    assert r.status_code == 500
    [row] = proxy.audit_rows()
    assert (row.status, row.outcome, row.strategy) == (500, "error", "answer")
    assert "RuntimeError: verifier bug" in row.error


def test_a_server_error_mid_stream_is_500_not_499(start_proxy, monkeypatch):
    proxy = start_proxy(stream_check_chars=10)
    verifier = proxy.app.state.oyster.verifier
    real = verifier.check
    calls = []

    def fails_second_window(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("verifier bug mid-stream")
        return real(*args, **kwargs)

    monkeypatch.setattr(verifier, "check", fails_second_window)
    body = {"model": "m", "stream": True, "messages": USER}
    with httpx.stream("POST", proxy.url + CHAT, json=body) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    # the stream ends cleanly with an error event (the connection stays usable)
    assert json.loads(events[-1])["error"]["code"] == "internal_error"
    [row] = _wait_rows(proxy.audit_location, 1)
    assert row.stream and (row.status, row.outcome) == (500, "error")
    assert "verifier bug mid-stream" in row.error


def test_a_streams_row_is_committed_before_its_final_chunk(start_proxy):
    proxy = start_proxy("say=cat_name", stream_check_chars=20)
    body = {"model": "m", "stream": True, "messages": USER}
    with httpx.stream("POST", proxy.url + CHAT, json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and '"finish_reason":"stop"' in line:
                rid = json.loads(line[6:])["oyster"]["request_id"]
                # the client holds the final chunk; [DONE] is not read yet
                assert _rows_by_id(proxy.audit_location)[rid].outcome == "passed"
                break
        else:
            pytest.fail("no final chunk")
