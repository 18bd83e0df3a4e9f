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
