"""The `hf:PATH` backend on a real checkpoint directory: the training part's tiny Llama
(random weights, byte-level tokenizer, ChatML template), saved to disk and loaded back the
way a user's trained checkpoint would be. Its replies are noise; the tests check the
plumbing (loading, template, streaming, limits, errors)."""

from __future__ import annotations

import asyncio

import pytest

from oyster.backends import from_spec
from oyster.backends.base import GenerationParams
from oyster.errors import BackendError, BackendTimeout
from oyster.types import Message

pytestmark = pytest.mark.slow

ASK = [Message(role="system", content="Be brief."), Message(role="user", content="Hello!")]
GREEDY = GenerationParams(max_tokens=12, temperature=0.0, repeat_penalty=1.0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from oyster.train.models import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny-ckpt"))


@pytest.fixture(scope="module")
def hf(checkpoint):
    return from_spec(f"hf:{checkpoint}")


def test_complete_generates_up_to_max_tokens(hf, checkpoint):
    c = hf.complete(ASK, GREEDY)
    assert c.model == checkpoint.name
    assert 0 < c.completion_tokens <= 12
    assert c.finish_reason in ("stop", "length")
    assert c.latency_s is not None


def test_stream_and_async_agree_with_greedy_complete(hf):
    whole = hf.complete(ASK, GREEDY).text
    assert "".join(hf.stream(ASK, GREEDY)).strip() == whole
    assert asyncio.run(hf.acomplete(ASK, GREEDY)).text == whole


def test_seeded_sampling_repeats_and_stop_strings_cut_the_reply(hf):
    sampled = GenerationParams(max_tokens=40, temperature=1.0, seed=7)
    whole = "".join(hf.stream(ASK, sampled))
    assert "".join(hf.stream(ASK, sampled)) == whole  # same seed, same text
    stop = whole[len(whole) // 2:len(whole) // 2 + 2]
    cut = "".join(hf.stream(ASK, sampled.model_copy(update={"stop": (stop,)})))
    assert cut == whole[:whole.index(stop)]


def test_a_timeout_is_a_backend_timeout(hf):
    with pytest.raises(BackendTimeout):
        hf.complete(ASK, GenerationParams(max_tokens=4000, temperature=0.0, timeout=0.2))


def test_a_directory_without_a_model_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(BackendError, match="cannot load"):
        from_spec(f"hf:{tmp_path}").complete(ASK, GREEDY)


def test_thread_count_is_an_option_and_is_checked(checkpoint):
    import torch

    before = torch.get_num_threads()
    try:
        b = from_spec(f"hf:{checkpoint}", n_threads=1)
        assert torch.get_num_threads() == 1
        assert b.complete(ASK, GREEDY).completion_tokens > 0
        with pytest.raises(BackendError, match="n_threads"):
            from_spec(f"hf:{checkpoint}", n_threads=0)
    finally:
        torch.set_num_threads(before)
