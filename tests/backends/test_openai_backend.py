"""The `openai` backend against real HTTP servers on 127.0.0.1 (uvicorn in a thread): the
project's scriptable fake upstream, plus a small app here that fails a set number of
times and counts requests in flight. Every failure case is bounded in count and time."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from oyster.backends import from_spec
from oyster.backends.base import GenerationParams
from oyster.errors import BackendError, BackendTimeout
from oyster.serve.testing import FAKE_REPLY, FakeUpstreamStats, ServerThread, fake_openai_app
from oyster.types import Message

HI = [Message(role="user", content="hello there")]
FAST = GenerationParams(timeout=5.0)


@pytest.fixture(scope="module")
def upstream():
    stats = FakeUpstreamStats()
    with ServerThread(fake_openai_app(stats)) as server:
        server.stats = stats  # type: ignore[attr-defined]
        yield server


class FlakyCounter:
    def __init__(self, failures: int, delay: float) -> None:
        self.failures, self.delay = failures, delay
        self.requests = self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()


def flaky_app(counter: FlakyCounter):
    """Answers 503 to the first `failures` requests, then a normal completion after `delay`."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> JSONResponse:
        with counter.lock:
            counter.requests += 1
            n = counter.requests
            counter.in_flight += 1
            counter.max_in_flight = max(counter.max_in_flight, counter.in_flight)
        try:
            await asyncio.sleep(counter.delay)
            if n <= counter.failures:
                return JSONResponse({"error": {"message": "busy"}}, status_code=503)
            return JSONResponse({
                "id": f"c{n}", "object": "chat.completion", "created": 0, "model": "flaky",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": f"reply {n}"}}]})
        finally:
            with counter.lock:
                counter.in_flight -= 1

    return app


def backend(server, model: str, **options):
    return from_spec(f"openai:{model}@{server.url}/v1", **options)


def test_complete_returns_text_model_and_usage(upstream):
    c = backend(upstream, "ok").complete(HI, FAST)
    assert c.text == FAKE_REPLY and c.model == "ok" and c.finish_reason == "stop"
    assert c.prompt_tokens == 10 and c.latency_s is not None


def test_messages_reach_the_endpoint(upstream):
    c = backend(upstream, "echo").complete(HI, FAST)
    assert c.text == "hello there"
    assert upstream.stats.last_messages == [{"role": "user", "content": "hello there"}]


def test_stream_and_astream_yield_the_whole_reply_in_pieces(upstream):
    b = backend(upstream, "ok")
    pieces = list(b.stream(HI, FAST))
    assert len(pieces) > 3 and "".join(pieces) == FAKE_REPLY

    async def collect() -> list[str]:
        return [p async for p in b.astream(HI, FAST)]

    assert "".join(asyncio.run(collect())) == FAKE_REPLY


def test_acomplete_matches_complete(upstream):
    b = backend(upstream, "echo")
    assert asyncio.run(b.acomplete(HI, FAST)).text == b.complete(HI, FAST).text


def test_a_slow_endpoint_times_out_within_the_bound(upstream):
    b = backend(upstream, "delay=5", max_retries=0)
    start = time.perf_counter()
    with pytest.raises(BackendTimeout, match=r"no reply within 0\.5s"):
        b.complete(HI, GenerationParams(timeout=0.5))
    assert time.perf_counter() - start < 3


def test_async_timeout_is_a_backend_timeout(upstream):
    b = backend(upstream, "hang", max_retries=0)
    with pytest.raises(BackendTimeout):
        asyncio.run(b.acomplete(HI, GenerationParams(timeout=0.5)))


def test_5xx_is_retried_then_reported_with_the_status(upstream):
    before = upstream.stats.requests
    with pytest.raises(BackendError, match="HTTP 500"):
        backend(upstream, "status=500", max_retries=1).complete(HI, FAST)
    assert upstream.stats.requests - before == 2  # the first try and one retry


def test_a_4xx_is_not_retried(upstream):
    before = upstream.stats.requests
    with pytest.raises(BackendError, match="HTTP 400"):
        backend(upstream, "status=400", max_retries=2).complete(HI, FAST)
    assert upstream.stats.requests - before == 1


def test_a_transient_5xx_recovers_after_backoff():
    counter = FlakyCounter(failures=2, delay=0.0)
    with ServerThread(flaky_app(counter)) as server:
        c = backend(server, "flaky", max_retries=2).complete(HI, FAST)
    assert c.text == "reply 3" and counter.requests == 3


def test_garbage_is_a_clear_backend_error(upstream):
    with pytest.raises(BackendError, match=r"not a chat completion \(not valid JSON"):
        backend(upstream, "garbage").complete(HI, FAST)


def test_an_unreachable_endpoint_is_a_clear_backend_error():
    from oyster.serve.testing import free_port

    b = from_spec(f"openai:m@http://127.0.0.1:{free_port()}/v1", max_retries=0)
    with pytest.raises(BackendError, match="cannot reach the endpoint"):
        b.complete(HI, FAST)


def test_a_stream_cut_midway_is_a_backend_error(upstream):
    with pytest.raises(BackendError):
        list(backend(upstream, "cut=2", max_retries=0).stream(HI, FAST))


def test_async_concurrency_is_bounded():
    counter = FlakyCounter(failures=0, delay=0.2)
    with ServerThread(flaky_app(counter)) as server:
        b = backend(server, "flaky", max_concurrency=2)

        async def burst() -> list[str]:
            done = await asyncio.gather(*(b.acomplete(HI, FAST) for _ in range(6)))
            return [c.text for c in done]

        texts = asyncio.run(burst())
    assert len(set(texts)) == 6
    assert counter.max_in_flight == 2


def test_sync_concurrency_is_bounded():
    from concurrent.futures import ThreadPoolExecutor

    counter = FlakyCounter(failures=0, delay=0.2)
    with ServerThread(flaky_app(counter)) as server:
        b = backend(server, "flaky", max_concurrency=3)
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda _: b.complete(HI, FAST), range(6)))
    assert counter.max_in_flight == 3


def test_no_key_for_the_openai_api_is_refused_up_front(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OYSTER_API_KEY", raising=False)
    with pytest.raises(BackendError, match="no API key"):
        from_spec("openai:gpt-4o-mini")


def test_aclose_closes_the_loops_async_client_and_the_backend_still_works(upstream):
    b = backend(upstream, "echo")

    async def use_then_close():
        await b.acomplete(HI, FAST)
        client, _ = b._async_client()
        await b.aclose()
        return client

    client = asyncio.run(use_then_close())
    assert client.is_closed()
    assert b.complete(HI, FAST).text == "hello there"  # a later call opens a new client
    b.close()
    b.close()  # safe twice
