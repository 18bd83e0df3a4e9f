"""`options_command`: a block of options declared once as a dataclass reaches the command as
that dataclass, with typer's parsing, defaults and required options intact."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from oyster.cli_options import options_command


@dataclass
class Shared:
    name: Annotated[str, typer.Option("--name")]
    times: Annotated[int, typer.Option("--times", min=1)] = 2


def test_a_block_is_parsed_into_its_dataclass_next_to_the_command_own_options() -> None:
    seen: list[tuple[Shared, bool]] = []
    app = typer.Typer()

    @app.command()
    @options_command
    def hello(shared: Shared, loud: Annotated[bool, typer.Option("--loud")] = False) -> None:
        seen.append((shared, loud))

    cli = CliRunner()
    assert cli.invoke(app, ["--name", "ada", "--loud"]).exit_code == 0
    assert seen == [(Shared(name="ada", times=2), True)]
    assert cli.invoke(app, ["--times", "3"]).exit_code == 2  # --name is required
    assert cli.invoke(app, ["--name", "x", "--times", "0"]).exit_code == 2  # min=1 kept


def test_an_option_declared_twice_is_refused() -> None:
    def clash(shared: Shared, name: Annotated[str, typer.Option("--other")] = "") -> None: ...

    with pytest.raises(TypeError, match="declared twice"):
        options_command(clash)
