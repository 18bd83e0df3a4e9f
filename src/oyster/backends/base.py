"""The chat-backend contract.

A backend turns a list of chat messages into a reply. Every backend:
- implements `complete` (sync) and `acomplete` (async) with the same arguments, and
  `stream`/`astream` yielding text chunks (a backend without native streaming yields the
  whole reply as one chunk);
- takes `GenerationParams` and honours `max_tokens`, `temperature`, `stop` and `timeout`;
- raises `BackendError` (or `BackendTimeout`) with a message that names the backend and the
  cause, never a library exception, and never returns an empty string silently: an empty
  completion from the model is returned as `Completion(text="", finish_reason=...)` so the
  caller can see it;
- loads models lazily, once, on first use (constructors do no I/O).

Backends are named by one spec string everywhere: `embedded`, `openai:MODEL@URL`, `hf:PATH`
(see `oyster.backends.from_spec`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from oyster.types import Message


class GenerationParams(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_tokens: int = Field(default=160, gt=0, le=32_768)
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    repeat_penalty: float = Field(default=1.15, ge=1.0, le=2.0)
    stop: tuple[str, ...] = ()
    seed: int | None = 0
    timeout: float = Field(default=60.0, gt=0.0, description="seconds for the whole reply")


class Completion(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    model: str
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    first_token_s: float | None = None


class ChatBackend(ABC):
    """Base class for chat backends; see the module docstring for the contract."""

    kind: ClassVar[str] = "base"

    @property
    @abstractmethod
    def spec(self) -> str:
        """The spec string that recreates this backend (e.g. `openai:gpt-4o@http://...`)."""

    @abstractmethod
    def complete(self, messages: Sequence[Message], params: GenerationParams | None = None
                 ) -> Completion: ...

    async def acomplete(self, messages: Sequence[Message], params: GenerationParams | None = None
                        ) -> Completion:
        return await asyncio.to_thread(self.complete, messages, params)

    def stream(self, messages: Sequence[Message], params: GenerationParams | None = None
               ) -> Iterator[str]:
        yield self.complete(messages, params).text

    async def astream(self, messages: Sequence[Message], params: GenerationParams | None = None
                      ) -> AsyncIterator[str]:
        # Local backends generate in a worker thread and hand chunks over a queue, so the
        # event loop never blocks; closing this iterator early stops the worker.
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()
        end = object()

        def pump() -> None:
            chunks = self.stream(messages, params)
            try:
                for chunk in chunks:
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except BaseException as e:  # handed to the consumer, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, e)
            finally:
                if isinstance(chunks, Generator):
                    chunks.close()
                loop.call_soon_threadsafe(queue.put_nowait, end)

        worker = loop.run_in_executor(None, pump)
        try:
            while (item := await queue.get()) is not end:
                if isinstance(item, BaseException):
                    raise item
                yield str(item)
        finally:
            stop.set()
            await worker

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release resources (connections, model memory). Safe to call twice."""

    async def aclose(self) -> None:
        """`close` from async code; backends with loop-bound clients close those too."""
        self.close()


class LocalChatBackend(ChatBackend):
    """A model run in this process. Subclasses yield text pieces from `_chunks`, recording
    `first_token_s`, `tokens` and `finish` in `timing`; `complete` and `stream` are built
    on it."""

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The name a `Completion` reports as its model."""

    @abstractmethod
    def _chunks(self, messages: Sequence[Message], params: GenerationParams,
                timing: dict[str, Any]) -> Iterator[str]: ...

    def complete(self, messages: Sequence[Message], params: GenerationParams | None = None
                 ) -> Completion:
        params = params or GenerationParams()
        timing: dict[str, Any] = {}
        start = time.perf_counter()
        text = "".join(self._chunks(messages, params, timing))
        return Completion(
            text=text.strip(), model=self.model_name, finish_reason=timing.get("finish", "stop"),
            completion_tokens=timing.get("tokens"),
            latency_s=round(time.perf_counter() - start, 4),
            first_token_s=(round(timing["first_token_s"], 4)
                           if "first_token_s" in timing else None),
        )

    def stream(self, messages: Sequence[Message], params: GenerationParams | None = None
               ) -> Iterator[str]:
        yield from self._chunks(messages, params or GenerationParams(), {})
