"""`oyster chat` (one reply, or an interactive session) and `oyster demo`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from oyster.cli_options import AssessorOption, PolicyOption
from oyster.errors import BackendError, InputError, OysterError

if TYPE_CHECKING:
    from oyster.respond.responder import Reply, Responder

# Exit codes: 2 for bad input or configuration, 3 when the backend fails.
EXIT_INPUT = 2
EXIT_BACKEND = 3
SESSION_HELP = "/why: the last decision's utilities and chain · /reset: start over · /quit"

BackendOption = Annotated[str, typer.Option(
    "--backend", help="chat backend: embedded, embedded:FILE.gguf, openai:MODEL@URL (key from "
                      "OYSTER_API_KEY or OPENAI_API_KEY), hf:CHECKPOINT_DIR")]
MaxTokensOption = Annotated[int, typer.Option("--max-tokens", min=1, max=4096,
                                              help="most tokens per reply")]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=0.1,
                                              help="seconds the backend may take per reply")]


def _exit(err: OysterError | str) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(EXIT_BACKEND if isinstance(err, BackendError) else EXIT_INPUT)


def read_messages(source: str) -> Any:
    """A conversation from a JSON file (or `-` for standard input): a list of
    {role, content} objects, or an object with a `messages` list."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
    except OSError as e:
        raise InputError(f"{source}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{source}: not valid JSON: {e.msg} (line {e.lineno})") from None
    if isinstance(data, dict) and "messages" in data:
        data = data["messages"]
    if not isinstance(data, list):
        raise InputError(f"{source}: expected a list of {{role, content}} messages")
    return data


def why_text(reply: Reply) -> str:
    """The last decision explained: strategy, why, utilities and the chain."""
    d = reply.decision
    lines = [f"strategy: {d.strategy} (reply carried out {reply.strategy}, {reply.outcome})",
             f"why: {d.why}",
             f"level {d.level} · categories: "
             + (", ".join(f"{c.name} {c.score:.2f}" for c in d.categories) or "none")
             + " · user type: " + ", ".join(f"{t} {p:.2f}" for t, p in d.user_type.items()),
             "utilities: " + "  ".join(f"{s} {u:+.2f}" for s, u in
                                       sorted(d.utilities.items(), key=lambda kv: -kv[1])),
             "chain:", f"  user needs: {d.chain.user_needs}"]
    if d.chain.risk_intent:
        lines.append(f"  risk intent: {d.chain.risk_intent}")
    lines += [f"  guideline: {g}" for g in d.chain.guidelines]
    lines += [f"  safety: {s}" for s in d.chain.safety_strategies]
    lines += [f"  usefulness: {s}" for s in d.chain.usefulness_strategies]
    if not reply.verification.passed or reply.outcome != "passed":
        lines.append("verification: " + "; ".join(
            f"attempt {i + 1} ({a.strategy}): "
            + ("passed" if a.verification.passed else a.verification.detail)
            for i, a in enumerate(reply.attempts)))
    return "\n".join(lines)


def interactive_session(responder: Responder, as_json: bool = False) -> None:
    """Read turns from standard input until /quit or end of input; the whole history goes
    to the engine every turn, so its belief about the user moves turn by turn. A bad turn
    is reported and skipped; a failing backend ends the session (`BackendError`)."""
    from oyster.respond.demo import EMBEDDED_NOTE, provenance
    from oyster.types import Message

    history: list[Message] = []
    last: Reply | None = None
    typer.echo(f"oyster chat · {responder.backend.spec} · {SESSION_HELP}", err=True)
    if responder.backend.kind == "embedded":
        typer.secho(EMBEDDED_NOTE, dim=True, err=True)
    while True:
        try:
            line = input("" if as_json else "you> ")  # --json: standard output is JSONL
        except EOFError:
            return
        command = line.strip()
        if command in ("/quit", "/exit"):
            return
        if command == "/reset":
            history, last = [], None
            continue
        if command == "/why":
            typer.echo(why_text(last) if last else "no decision yet")
            continue
        if command.startswith("/"):
            typer.echo(SESSION_HELP)
            continue
        if not command:
            continue
        try:
            last = responder.respond([*history, Message(role="user", content=line)])
        except InputError as e:  # the session goes on without the bad turn
            typer.echo(f"error: {e}", err=True)
            continue
        history += [Message(role="user", content=line),
                    Message(role="assistant", content=last.text)]
        if as_json:
            typer.echo(json.dumps(last.record(), ensure_ascii=False))
        else:
            typer.echo(f"oyster> {last.text}")
            typer.secho(f"        [{provenance(last)}]", dim=True, err=True)


def register(app: typer.Typer) -> None:

    @app.command()
    def chat(
        message: Annotated[str | None, typer.Argument(
            help="the user's message; leave out for an interactive session")] = None,
        backend: BackendOption = "embedded",
        as_json: Annotated[bool, typer.Option(
            "--json", help="print {decision, reply, verification, outcome, attempts}")] = False,
        messages: Annotated[str | None, typer.Option(
            "--messages", help="JSON file (or -) with the conversation as {role, content} "
                               "messages; the reply answers its last user turn")] = None,
        policy: PolicyOption = None,
        assessor: AssessorOption = "default",
        max_tokens: MaxTokensOption = 128,
        timeout: TimeoutOption = 60.0,
    ) -> None:
        """Decide, generate and verify a reply (with no message: an interactive session,
        where /why explains the last decision). Exit 2 on bad input, 3 if the backend fails."""
        if message is not None and messages is not None:
            raise _exit("give a message or --messages, not both")
        from oyster.respond.demo import EMBEDDED_NOTE, provenance
        from oyster.respond.responder import Responder

        try:
            responder = Responder.from_specs(backend, policy, assessor, max_tokens, timeout)
            if message is None and messages is None:
                interactive_session(responder, as_json)
                return
            conversation = read_messages(messages) if messages is not None else message
            reply = responder.respond(conversation)  # type: ignore[arg-type]
        except OysterError as e:
            raise _exit(e) from None
        if as_json:
            typer.echo(json.dumps(reply.record(), ensure_ascii=False, indent=2))
        else:
            typer.echo(reply.text)
            typer.secho(f"[{provenance(reply)}]", dim=True, err=True)
            if responder.backend.kind == "embedded":
                typer.secho(EMBEDDED_NOTE, dim=True, err=True)

    @app.command()
    def demo(
        backend: BackendOption = "embedded",
        policy: PolicyOption = None,
        assessor: AssessorOption = "default",
        max_tokens: MaxTokensOption = 120,
    ) -> None:
        """A short scripted conversation showing answer, guide, correct and refuse, with a
        one-line why under each reply."""
        from oyster.respond.demo import run_demo
        from oyster.respond.responder import Responder

        try:
            run_demo(Responder.from_specs(backend, policy, assessor, max_tokens, timeout=60.0))
        except OysterError as e:
            raise _exit(e) from None
