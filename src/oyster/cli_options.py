"""Options shared by several `oyster` verbs, so every part spells them the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
