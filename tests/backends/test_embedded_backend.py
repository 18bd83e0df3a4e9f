"""The embedded backend on the real SmolLM2-135M GGUF (llama-cpp-python), loaded once."""

from __future__ import annotations

import asyncio

import pytest

from oyster.backends import from_spec
from oyster.backends.base import GenerationParams
from oyster.backends.embedded import EmbeddedBackend, load_model
from oyster.errors import BackendError, BackendTimeout
from oyster.types import Message

pytestmark = pytest.mark.slow

ASK = [Message(role="system", content="You are a helpful assistant."),
       Message(role="user", content="Name three colours of the rainbow.")]
SHORT = GenerationParams(max_tokens=24, temperature=0.0)


@pytest.fixture(scope="module")
def embedded():
    return from_spec("embedded")


def test_complete_reports_text_tokens_and_timing(embedded):
    c = embedded.complete(ASK, SHORT)
    assert c.text and c.model.endswith(".gguf")
    assert 0 < c.completion_tokens <= 24
    assert c.first_token_s is not None and 0 < c.first_token_s <= c.latency_s
    assert c.finish_reason in ("stop", "length")


def test_the_model_is_loaded_once_per_process(embedded):
    path = embedded.model_path
    assert load_model(path, 2048, 2) is load_model(path, 2048, 2)
    assert EmbeddedBackend()._model() is embedded._model()


def test_stream_and_async_twins_agree_with_complete(embedded):
    whole = embedded.complete(ASK, SHORT).text
    assert "".join(embedded.stream(ASK, SHORT)).strip() == whole
    assert asyncio.run(embedded.acomplete(ASK, SHORT)).text == whole

    async def collect() -> str:
        return "".join([p async for p in embedded.astream(ASK, SHORT)])

    assert asyncio.run(collect()).strip() == whole


def test_a_timeout_stops_generation(embedded):
    with pytest.raises(BackendTimeout, match="within"):
        embedded.complete(ASK, GenerationParams(max_tokens=160, timeout=0.05))


def test_old_turns_are_dropped_to_fit_the_context():
    small = EmbeddedBackend(n_ctx=512)  # a small window keeps the prompt cheap to evaluate
    filler = "word " * 100
    history = [m for i in range(4) for m in (Message(role="user", content=f"{i} {filler}"),
                                            Message(role="assistant", content=filler))]
    kept = small._fit_context(small._model().llm, [ASK[0], *history, ASK[1]], 24)
    assert kept[0]["role"] == "system" and kept[-1] == {"role": "user",
                                                        "content": ASK[1].content}
    assert 2 < len(kept) < 10  # the oldest turns went, the recent ones stayed
    assert kept[1]["content"] != history[0].content
    assert small.complete([ASK[0], *history, ASK[1]], SHORT).text


def test_a_single_message_too_long_for_the_context_is_a_clear_error(embedded):
    with pytest.raises(BackendError, match="context holds 8192"):
        embedded.complete([Message(role="user", content="word " * 9000)], SHORT)
    assert embedded.complete(ASK, SHORT).text  # and the model still works afterwards
