"""`openai:MODEL@URL`: any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server,
Ollama, ...) through the official `openai` client.

- Timeouts: `GenerationParams.timeout` bounds each HTTP attempt.
- Retries: the client retries connection errors, timeouts, 408/409/429 and 5xx answers
  `max_retries` times with exponential backoff (honouring `Retry-After`).
- Concurrency: at most `max_concurrency` requests are in flight per backend (sync calls
  and each event loop's async calls are bounded separately).
- The key comes from `api_key=`, else `OYSTER_API_KEY`, else `OPENAI_API_KEY`; a
  self-hosted endpoint may need none.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import openai
from openai.types.chat import ChatCompletion

from oyster.backends.base import ChatBackend, Completion, GenerationParams
from oyster.errors import BackendError, BackendTimeout
from oyster.types import Message

OPENAI_URL = "https://api.openai.com/v1"
KEY_VARIABLES = ("OYSTER_API_KEY", "OPENAI_API_KEY")
# Self-hosted servers usually ignore the key, but the client insists on having one.
NO_KEY = "no-key"
# A whole reply is posted with the client's `post`: `chat.completions.create` first walks
# the request against its typed parameters, a millisecond of the proxy's CPU per call on a
# long system prompt, for dicts built here (streams keep `create`: once per stream)
COMPLETIONS = "/chat/completions"


class OpenAIBackend(ChatBackend):
    """A model behind an OpenAI-compatible `/chat/completions` endpoint."""

    kind: ClassVar[str] = "openai"

    def __init__(self, model: str, base_url: str | None = None, *, api_key: str | None = None,
                 max_retries: int = 2, max_concurrency: int = 8) -> None:
        if not model:
            raise BackendError("openai backend: the spec needs a model name (openai:MODEL@URL)")
        if max_retries < 0 or max_concurrency < 1:
            raise BackendError("openai backend: max_retries must be >= 0 and "
                               "max_concurrency >= 1")
        self.model = model
        self.base_url = (base_url or OPENAI_URL).rstrip("/")
        key = api_key or next((os.environ[v] for v in KEY_VARIABLES if os.environ.get(v)), None)
        if key is None and self.base_url == OPENAI_URL:
            raise BackendError("openai backend: no API key; set OYSTER_API_KEY or OPENAI_API_KEY")
        self._key = key or NO_KEY
        self.max_retries = max_retries
        self.max_concurrency = max_concurrency
        self._client: openai.OpenAI | None = None
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[openai.AsyncOpenAI, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()

    @property
    def spec(self) -> str:
        return f"openai:{self.model}@{self.base_url}"

    # -- clients ---------------------------------------------------------------------------

    def _sync_client(self) -> openai.OpenAI:
        if self._client is None:
            self._client = openai.OpenAI(api_key=self._key, base_url=self.base_url,
                                         max_retries=self.max_retries)
        return self._client

    def _async_client(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        # One client and one semaphore per event loop: both hold loop-bound state.
        loop = asyncio.get_running_loop()
        if loop not in self._async:
            self._async[loop] = (
                openai.AsyncOpenAI(api_key=self._key, base_url=self.base_url,
                                   max_retries=self.max_retries),
                asyncio.Semaphore(self.max_concurrency))
        return self._async[loop]

    def _request(self, messages: Sequence[Message], params: GenerationParams, stream: bool
                 ) -> dict[str, Any]:
        """The request body (the timeout goes with the call)."""
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": params.max_tokens, "temperature": params.temperature,
            "top_p": params.top_p, "stream": stream,
        }
        if params.stop:
            request["stop"] = list(params.stop)
        if params.seed is not None:
            request["seed"] = params.seed
        return request

    # -- errors and parsing ----------------------------------------------------------------

    @contextmanager
    def _errors(self, params: GenerationParams) -> Iterator[None]:
        """Turn the client's exceptions into `BackendError`s that name the endpoint."""
        where = f"openai backend {self.model}@{self.base_url}"
        tries = f"{self.max_retries + 1} attempt(s)"
        try:
            yield
        except openai.APITimeoutError:
            raise BackendTimeout(f"{where}: no reply within {params.timeout:g}s "
                                 f"({tries})") from None
        except openai.APIConnectionError as e:
            cause = e.__cause__ or e
            raise BackendError(f"{where}: cannot reach the endpoint ({tries}): {cause}") from None
        except openai.AuthenticationError:
            raise BackendError(f"{where}: the endpoint rejected the API key (401); "
                               "set OYSTER_API_KEY or OPENAI_API_KEY") from None
        except openai.APIStatusError as e:
            raise BackendError(f"{where}: the endpoint answered HTTP {e.status_code} "
                               f"({tries}): {_short(e.message)}") from None
        except openai.APIResponseValidationError as e:
            raise BackendError(f"{where}: the reply is not a chat completion: "
                               f"{_short(str(e))}") from None
        except ValueError as e:  # the client could not decode the body
            raise BackendError(f"{where}: the reply is not a chat completion (not valid JSON: "
                               f"{_short(str(e))})") from None
        except openai.OpenAIError as e:
            raise BackendError(f"{where}: unusable reply: {_short(str(e))}") from None

    def _completion(self, response: Any, started: float) -> Completion:
        try:
            choice = response.choices[0]
            content = choice.message.content
            usage = getattr(response, "usage", None)
            if content is not None and not isinstance(content, str):
                raise TypeError("message content is not text")
            return Completion(
                text=(content or "").strip(), model=str(response.model or self.model),
                finish_reason=str(choice.finish_reason or "stop"),
                prompt_tokens=getattr(usage, "prompt_tokens", None),
                completion_tokens=getattr(usage, "completion_tokens", None),
                latency_s=round(time.perf_counter() - started, 4),
            )
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
            raise BackendError(f"openai backend {self.model}@{self.base_url}: the reply is "
                               f"not a chat completion ({type(e).__name__}: {e})") from None

    def _piece(self, chunk: Any) -> str:
        try:
            if not chunk.choices:  # e.g. a final usage-only chunk
                return ""
            piece = chunk.choices[0].delta.content
        except (AttributeError, IndexError, TypeError) as e:
            raise BackendError(f"openai backend {self.model}@{self.base_url}: a streamed "
                               f"chunk is not a chat completion chunk ({e})") from None
        return piece if isinstance(piece, str) else ""

    # -- the contract ----------------------------------------------------------------------

    def complete(self, messages: Sequence[Message], params: GenerationParams | None = None
                 ) -> Completion:
        params = params or GenerationParams()
        started = time.perf_counter()
        with self._slots, self._errors(params):
            response = self._sync_client().post(
                COMPLETIONS, cast_to=ChatCompletion, body=self._request(messages, params, False),
                options={"timeout": params.timeout})
        return self._completion(response, started)

    async def acomplete(self, messages: Sequence[Message], params: GenerationParams | None = None
                        ) -> Completion:
        params = params or GenerationParams()
        client, slots = self._async_client()
        started = time.perf_counter()
        async with slots:
            with self._errors(params):
                response = await client.post(
                    COMPLETIONS, cast_to=ChatCompletion,
                    body=self._request(messages, params, False),
                    options={"timeout": params.timeout})
        return self._completion(response, started)

    def stream(self, messages: Sequence[Message], params: GenerationParams | None = None
               ) -> Iterator[str]:
        params = params or GenerationParams()
        with self._slots, self._errors(params):
            chunks = self._sync_client().chat.completions.create(
                **self._request(messages, params, stream=True), timeout=params.timeout)
            with chunks:  # closing the generator early closes the HTTP stream too
                for chunk in chunks:
                    if piece := self._piece(chunk):
                        yield piece

    async def astream(self, messages: Sequence[Message], params: GenerationParams | None = None
                      ) -> AsyncIterator[str]:
        params = params or GenerationParams()
        client, slots = self._async_client()
        async with slots:
            with self._errors(params):
                chunks = await client.chat.completions.create(
                    **self._request(messages, params, stream=True), timeout=params.timeout)
                async with chunks:  # closing the generator early closes the HTTP stream too
                    async for chunk in chunks:
                        if piece := self._piece(chunk):
                            yield piece

    def close(self) -> None:
        """Close the sync client. Async clients hold connections bound to their event
        loop and are closed by `aclose` on that loop; here they are only dropped."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._async.clear()

    async def aclose(self) -> None:
        """Close the async client of the running loop, then everything `close` closes."""
        entry = self._async.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[0].close()
        self.close()


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
