"""One JSON answer from a chat backend, validated, for the LLM edit and propagation steps.

The backend is asked once; a malformed or invalid answer gets one follow-up naming the
problem; after that the caller falls back to its rule-based twin. A backend failure also
falls back, with the error kept in the round's record.
"""

from __future__ import annotations

import secrets
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from oyster.backends.base import ChatBackend, GenerationParams
from oyster.errors import BackendError
from oyster.judges.llm import first_json_object
from oyster.lingobp.settings import prompts
from oyster.lingobp.steps import Call, Steps
from oyster.types import Message

#: Deterministic, long enough for a JSON object with a few short phrases.
LLM_STEP_PARAMS = GenerationParams(max_tokens=400, temperature=0.0, repeat_penalty=1.0)

M = TypeVar("M", bound=BaseModel)


def new_fence() -> str:
    """A fresh marker per call, so quoted text cannot close the fence."""
    return f"DATA-{secrets.token_hex(8)}"


def _problem(e: Exception) -> str:
    if isinstance(e, ValidationError):
        err = e.errors()[0]
        return f"field '{'.'.join(str(p) for p in err['loc'])}': {err['msg']}"
    return str(e)


def ask_json(backend: ChatBackend, messages: list[Message], model: type[M],
             params: GenerationParams | None = None) -> Steps[tuple[M | None, str]]:
    """(validated answer, "") or (None, why there is none)."""
    problem = ""
    for attempt in range(2):
        try:
            completion = yield Call(backend.complete, backend.acomplete,
                                    (messages, params or LLM_STEP_PARAMS))
        except BackendError as e:
            return None, f"backend error: {e}"
        try:
            return model.model_validate(first_json_object(completion.text)), ""
        except (ValueError, ValidationError) as e:
            problem = _problem(e)
            if attempt == 0:
                messages = [*messages, Message(role="assistant", content=completion.text or " "),
                            Message(role="user", content=prompts().retry.format(problem=problem))]
    return None, f"malformed answer twice ({problem})"
