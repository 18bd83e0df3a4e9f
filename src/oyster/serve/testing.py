"""A tiny scriptable OpenAI-compatible server, and a helper that runs any ASGI app under a
real uvicorn server on 127.0.0.1 in a background thread.

Both exist so that tests and `benchmarks/proxy_load.py` can drive the proxy against a real
HTTP upstream through the ordinary `openai:MODEL@URL` backend, with no mocks.

The fake upstream is scripted by the *model name* of each request, so one server can play
every fault at once and a backend spec alone chooses the behaviour. The name is a list of
`+`-separated directives:

- `ok` — reply with a short fixed text (the default when nothing else applies),
- `echo` — reply with the last user message,
- `echo_system` — reply with the system message (the proxy's steering instructions),
- `say=NAME` — reply with the text registered as NAME (`fake_openai_app(replies=...)`),
- `delay=S` — wait S seconds before answering,
- `chunk_delay=S` — wait S seconds between streamed chunks,
- `status=N` — answer with HTTP status N and an OpenAI-style error body,
- `garbage` — answer 200 with a body that is not JSON (streamed: an event that is not),
- `hang` — never answer (until the client goes away),
- `cut=K` — stream K chunks, then drop the connection without finishing.

e.g. `openai:echo+chunk_delay=0.01@http://127.0.0.1:PORT/v1`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

FAKE_REPLY = "Here is a short, plain answer to your question, written by the fake upstream."


class FakeScript(BaseModel):
    """The behaviour a model name asks for."""

    model_config = ConfigDict(frozen=True)

    reply: str = "ok"
    say: str | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    status: int | None = None
    garbage: bool = False
    hang: bool = False
    cut: int | None = None

    @classmethod
    def parse(cls, model: str) -> FakeScript:
        fields: dict[str, Any] = {}
        for part in filter(None, model.split("+")):
            name, _, value = part.partition("=")
            if name in ("ok", "echo", "echo_system"):
                fields["reply"] = name
            elif name in ("garbage", "hang"):
                fields[name] = True
            elif name in ("delay", "chunk_delay"):
                fields[name] = float(value)
            elif name in ("status", "cut"):
                fields[name] = int(value)
            elif name == "say":
                fields["say"] = value
            else:
                raise ValueError(f"unknown fake-upstream directive {part!r}")
        return cls(**fields)


@dataclass
class FakeUpstreamStats:
    """What the fake upstream saw; read by tests (e.g. that the proxy stopped a stream)."""

    requests: int = 0
    streams_finished: int = 0
    streams_stopped: int = 0
    last_messages: list[dict[str, Any]] = field(default_factory=list)


def _words(text: str) -> list[str]:
    """Stream pieces: words with their space; a long run without spaces (Chinese) in pieces
    of four characters, roughly a token or two each."""
    pieces = text.split(" ")
    words = [p + (" " if i < len(pieces) - 1 else "") for i, p in enumerate(pieces)]
    return [w[i:i + 4] if len(w) > 12 else w
            for w in words for i in range(0, len(w) if len(w) > 12 else 1, 4)]


def fake_openai_app(stats: FakeUpstreamStats | None = None,
                    replies: dict[str, str] | None = None) -> FastAPI:
    """A FastAPI app speaking enough of the OpenAI chat API for the `openai` SDK.
    `replies`: texts the `say=NAME` directive answers with."""
    seen = stats if stats is not None else FakeUpstreamStats()
    scripted = replies or {}
    app = FastAPI()
    app.state.stats = seen

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "ok", "object": "model", "created": 0,
                                            "owned_by": "fake"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        seen.requests += 1
        seen.last_messages = body.get("messages", [])
        try:
            script = FakeScript.parse(str(body.get("model", "")))
        except ValueError as e:
            return JSONResponse({"error": {"message": str(e), "type": "invalid_request_error"}},
                                status_code=400)
        while script.hang and not await request.is_disconnected():
            await asyncio.sleep(0.05)
        if script.hang:
            return Response(status_code=499)
        if script.delay:
            await asyncio.sleep(script.delay)
        if script.status is not None:
            return JSONResponse({"error": {"message": f"fake upstream failure {script.status}",
                                           "type": "server_error", "code": None}},
                                status_code=script.status)
        cid = f"chatcmpl-fake-{uuid.uuid4().hex[:12]}"
        if script.garbage and body.get("stream"):
            return StreamingResponse(iter(["data: {\"id\": \"" + cid + "\", <html>\n\n"]),
                                     media_type="text/event-stream")
        if script.garbage:
            return PlainTextResponse("<html>this is not JSON", media_type="application/json")
        if script.say is not None and script.say not in scripted:
            return JSONResponse({"error": {"message": f"no scripted reply {script.say!r}",
                                           "type": "invalid_request_error"}}, status_code=400)
        text = (scripted[script.say] if script.say is not None
                else _reply_text(script.reply, seen.last_messages))
        if not body.get("stream"):
            return JSONResponse({
                "id": cid, "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", ""),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()),
                          "total_tokens": 10 + len(text.split())},
            })
        return StreamingResponse(_sse(cid, str(body.get("model", "")), text, script, seen),
                                 media_type="text/event-stream")

    return app


def _reply_text(kind: str, messages: list[dict[str, Any]]) -> str:
    role = {"echo": "user", "echo_system": "system"}.get(kind)
    if role is None:
        return FAKE_REPLY
    contents = [str(m.get("content", "")) for m in messages if m.get("role") == role]
    return contents[-1] if contents else ""


async def _sse(cid: str, model: str, text: str, script: FakeScript,
               seen: FakeUpstreamStats) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        payload = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                   "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(payload)}\n\n"

    finished = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        for i, word in enumerate(_words(text)):
            if script.cut is not None and i >= script.cut:
                raise ConnectionAbortedError("fake upstream cut the stream")
            if script.chunk_delay:
                await asyncio.sleep(script.chunk_delay)
            yield chunk({"content": word})
        yield chunk({}, "stop")
        yield "data: [DONE]\n\n"
        finished = True
    finally:
        if finished:
            seen.streams_finished += 1
        else:
            seen.streams_stopped += 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """Run an ASGI app under uvicorn on 127.0.0.1 in a daemon thread.

        with ServerThread(app) as server:
            httpx.get(server.url + "/healthz")

    Startup is awaited (lifespan included) and shutdown is graceful, both bounded in time.
    """

    def __init__(self, app: Any, port: int | None = None, start_timeout: float = 20.0) -> None:
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True,
                                        name=f"uvicorn-{self.port}")
        self._start_timeout = start_timeout

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """`python -m oyster.serve.testing --port N`: run the fake upstream in the foreground."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(fake_openai_app(), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False, timeout_keep_alive=75)


if __name__ == "__main__":
    main()
