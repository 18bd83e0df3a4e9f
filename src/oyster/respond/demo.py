"""`oyster demo` / `make demo`: a short scripted conversation (`demo.yaml`) showing the
strategies at work, with a one-line why under each reply."""

from __future__ import annotations

from functools import cache

import typer
from pydantic import BaseModel, ConfigDict, Field

from oyster._packaged import packaged_model
from oyster.respond.responder import Reply, Responder
from oyster.types import Message, Strategy


class DemoScene(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    shows: Strategy = Field(description="the strategy this scene is written to show")
    turns: list[str] = Field(min_length=1, description="the user's messages, in order")


class DemoScript(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scenes: list[DemoScene] = Field(min_length=1)


@cache
def demo_script() -> DemoScript:
    return packaged_model("oyster.respond", "demo.yaml", DemoScript)


def run_scene(responder: Responder, scene: DemoScene) -> list[Reply]:
    """Play one scene: each user turn is answered with the history so far."""
    history: list[Message] = []
    replies = []
    for turn in scene.turns:
        reply = responder.respond([*history, Message(role="user", content=turn)])
        history += [Message(role="user", content=turn),
                    Message(role="assistant", content=reply.text)]
        replies.append(reply)
    return replies


def run_demo(responder: Responder | None = None) -> list[Reply]:
    """Play every scene and print it; returns the replies (the last one per scene shows
    the scene's strategy). Without a responder, uses the default engine and `embedded`."""
    if responder is None:
        from oyster.respond.cli import build_responder

        responder = build_responder("embedded", None, "default", max_tokens=120, timeout=60.0)
    from oyster.respond.cli import EMBEDDED_NOTE, provenance

    if responder.backend.kind == "embedded":
        typer.secho(EMBEDDED_NOTE, dim=True)
    shown: list[Reply] = []
    for scene in demo_script().scenes:
        typer.secho(f"\n── {scene.title} ──", bold=True)
        for turn, reply in zip(scene.turns, run_scene(responder, scene), strict=True):
            typer.echo(f"you:    {turn}")
            typer.echo(f"oyster: {reply.text}")
            typer.secho(f"why:    {reply.decision.why}", dim=True)
            typer.secho(f"by:     {provenance(reply)}", dim=True)
            shown.append(reply)
    return shown
