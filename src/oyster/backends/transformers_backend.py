"""`hf:PATH`: a local transformers checkpoint directory (for instance one Oyster trained).

Loads with `local_files_only=True`, so nothing is fetched from a hub; the directory must
hold the model, its tokenizer and a chat template. Checkpoints are loaded once per process
and shared; generation runs in a worker thread so replies can stream, and
`GenerationParams.timeout` becomes transformers' own `max_time`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from oyster.backends.base import GenerationParams, LocalChatBackend
from oyster.errors import BackendError, BackendTimeout
from oyster.types import Message


@dataclass
class _Checkpoint:
    model: Any
    tokenizer: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


_CHECKPOINTS: dict[str, _Checkpoint] = {}
_CHECKPOINTS_LOCK = threading.Lock()


def load_checkpoint(path: Path) -> _Checkpoint:
    """The model and tokenizer in `path`, loaded on first use and then shared."""
    key = str(path.resolve())
    with _CHECKPOINTS_LOCK:
        if key not in _CHECKPOINTS:
            if not path.is_dir():
                raise BackendError(f"hf backend: no checkpoint directory at {path}")
            try:
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError:
                raise BackendError("hf backend: transformers is not installed "
                                   "(pip install 'oyster-csa[train]')") from None
            try:
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
            except (OSError, ValueError) as e:
                raise BackendError(f"hf backend: cannot load {path}: {e}") from None
            if not getattr(tokenizer, "chat_template", None):
                raise BackendError(f"hf backend: the tokenizer in {path} has no chat template")
            model.eval()
            _CHECKPOINTS[key] = _Checkpoint(model, tokenizer)
        return _CHECKPOINTS[key]


class TransformersBackend(LocalChatBackend):
    """A causal LM checkpoint directory run with transformers on this machine."""

    kind: ClassVar[str] = "hf"

    def __init__(self, path: str | Path, n_threads: int | None = None) -> None:
        self.path = Path(path)
        if n_threads is not None:
            if n_threads < 1:
                raise BackendError("hf backend: n_threads must be at least 1")
            import torch

            # process-wide in torch; one thread per process avoids OpenMP threads spinning
            # against each other on a small or shared CPU (see docs/training.md)
            torch.set_num_threads(n_threads)

    @property
    def spec(self) -> str:
        return f"hf:{self.path}"

    def _chunks(self, messages: Sequence[Message], params: GenerationParams,
                timing: dict[str, Any]) -> Iterator[str]:
        ckpt = self._checkpoint()
        import transformers
        from transformers import TextIteratorStreamer

        tok = ckpt.tokenizer
        inputs = tok.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=True, return_tensors="pt", return_dict=True)
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        sampling = ({"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
                    if params.temperature > 0 else {"do_sample": False})
        failure: list[BaseException] = []

        if params.stop:
            sampling |= {"stop_strings": list(params.stop), "tokenizer": tok}

        def generate() -> None:
            try:
                if params.seed is not None:
                    transformers.set_seed(params.seed)
                out = ckpt.model.generate(
                    **inputs, **sampling, streamer=streamer, max_new_tokens=params.max_tokens,
                    repetition_penalty=params.repeat_penalty, max_time=params.timeout,
                    pad_token_id=tok.pad_token_id or tok.eos_token_id)
                timing["tokens"] = int(out.shape[-1] - inputs["input_ids"].shape[-1])
            except BaseException as e:  # re-raised in the consuming thread
                failure.append(e)
                streamer.end()

        start = time.perf_counter()
        with ckpt.lock:
            worker = threading.Thread(target=generate, daemon=True)
            worker.start()
            sent = 0  # characters of `text` already yielded
            text = ""
            for piece in streamer:
                timing.setdefault("first_token_s", time.perf_counter() - start)
                text += piece
                end = min((i for i in (text.find(s) for s in params.stop) if i >= 0),
                          default=len(text))
                if end > sent:
                    yield text[sent:end]
                    sent = end
            worker.join()
        if failure:
            raise BackendError(f"hf backend {self.path}: generation failed: {failure[0]}")
        if time.perf_counter() - start >= params.timeout:
            raise BackendTimeout(f"hf backend {self.path}: no complete reply within "
                                 f"{params.timeout:g}s")
        timing["finish"] = "length" if timing.get("tokens", 0) >= params.max_tokens else "stop"

    def _checkpoint(self) -> _Checkpoint:
        return load_checkpoint(self.path)

    @property
    def model_name(self) -> str:
        return self.path.name
