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


EMBEDDED_NOTE = ("note: replies here come from the embedded SmolLM2-135M, a tiny model that runs "
                 "anywhere; real quality comes from a capable backend: "
                 "--backend openai:MODEL@URL")


def provenance(reply: Reply) -> str:
    """Who wrote the reply that went out: the backend, the policy, or both, and why."""
    backend = reply.backend or "the backend"
    if reply.source == "model":
        tries = " on its second try" if reply.outcome == "regenerated" else ""
        return f"written by {backend}{tries}"
    kinds = {p.kind: p for p in reply.parts}
    if reply.source == "policy":
        if "refusal" in kinds:
            return (f"the policy's refusal; {backend} was not asked (policy "
                    "replies.model_refusals)")
        what = f"scaffold '{reply.scaffold}'" if reply.scaffold else f"{reply.strategy} fallback"
        if not reply.attempts:
            setting = ("model_scaffold_parts" if reply.scaffold
                       else "model_strategies or model_languages")
            return (f"written by the policy ({what}); {backend} was not asked (policy "
                    f"replies.{setting})")
        failed = "; ".join(dict.fromkeys(p for a in reply.attempts for p in a.verification.problems))
        return f"written by the policy ({what}); {backend}'s reply failed: {failed}"
    mine = " and ".join(p.kind for p in reply.parts if p.source == "model")
    theirs = " and ".join(p.kind for p in reply.parts if p.source == "policy")
    scaffold = f" of scaffold '{reply.scaffold}'" if reply.scaffold else ""
    return f"{backend} wrote the {mine}; the policy wrote the {theirs}{scaffold}"


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
        responder = Responder.from_specs("embedded", None, "default", max_tokens=120,
                                         timeout=60.0)
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
