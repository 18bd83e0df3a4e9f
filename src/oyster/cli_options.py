"""Options shared by several `oyster` verbs, so every part spells them the same way, and
`options_command`, which lets a verb family declare its block of options once."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

R = TypeVar("R")
_KEYWORD = inspect.Parameter.KEYWORD_ONLY

PolicyOption = Annotated[
    Path | None, typer.Option("--policy", help="policy YAML file (default: the packaged policy)",
                              dir_okay=False)]
AssessorOption = Annotated[
    str, typer.Option("--assessor", help="assessor spec: default, local, lexicon, llm:BACKEND, "
                                         "ensemble[:BACKEND]")]
RayOption = Annotated[
    str | None, typer.Option("--ray", help="run on a Ray cluster: local (start one here), auto "
                                           "(the cluster this machine joined), or its address "
                                           "(ray://HOST:10001, HOST:6379)",
                             envvar="OYSTER_RAY_ADDRESS")]
RayWorkersOption = Annotated[
    int | None, typer.Option("--ray-workers", min=1,
                             help="Ray workers (default: every CPU of the cluster)")]


def options_command(fn: Callable[..., R]) -> Callable[..., R]:
    """Let a command take blocks of options declared once, as dataclasses.

    Every parameter of `fn` annotated with a dataclass is shown to typer as that dataclass's
    fields (each field a typer-annotated option with its default); `fn` is called with the
    dataclass built from them. Two commands that share a block declare it once:

        @dataclass
        class RunOptions:
            out: Annotated[Path, typer.Option("--out")]
            limit: Annotated[int | None, typer.Option("--limit")] = None

        @app.command()
        @options_command
        def run(data: DataOption, run: RunOptions) -> None: ...
    """
    hints = get_type_hints(fn, include_extras=True)
    params: list[inspect.Parameter] = []
    blocks: dict[str, tuple[type, list[str]]] = {}
    for p in inspect.signature(fn).parameters.values():
        annotation = hints.get(p.name, p.annotation)
        if not (isinstance(annotation, type) and dataclasses.is_dataclass(annotation)):
            params.append(p.replace(annotation=annotation, kind=_KEYWORD))
            continue
        fields = get_type_hints(annotation, include_extras=True)
        names = []
        for f in dataclasses.fields(annotation):
            default = (f.default if f.default is not dataclasses.MISSING
                       else inspect.Parameter.empty)
            params.append(inspect.Parameter(f.name, _KEYWORD, default=default,
                                            annotation=fields[f.name]))
            names.append(f.name)
        blocks[p.name] = (annotation, names)
    taken = [p.name for p in params]
    if len(set(taken)) != len(taken):
        raise TypeError(f"{fn.__qualname__}: an option is declared twice in {taken}")

    @functools.wraps(fn)
    def command(**options: Any) -> R:
        for name, (block, fields) in blocks.items():
            options[name] = block(**{f: options.pop(f) for f in fields})
        return fn(**options)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command
