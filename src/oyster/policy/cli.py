"""`oyster policy show|validate`: inspect and check policy files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from oyster.errors import OysterError


def register(app: typer.Typer) -> None:
    policy_app = typer.Typer(help="Inspect and validate policy files.", no_args_is_help=True)
    app.add_typer(policy_app, name="policy")

    @policy_app.command("validate")
    def validate(file: Annotated[Path, typer.Argument(help="policy YAML file")]) -> None:
        """Load and validate a policy file; exit 2 with the file, field and reason if broken."""
        from oyster.policy import load_policy

        try:
            p = load_policy(file)
        except OysterError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"ok: {p.label}, {len(p.taxonomy.categories)} categories")

    @policy_app.command("show")
    def show(
        file: Annotated[Path | None, typer.Argument(help="policy YAML (default: packaged)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the whole policy as JSON")] = False,
    ) -> None:
        """Summarise a policy: categories with severity, strategies, game weights."""
        from rich.console import Console
        from rich.table import Table

        from oyster.policy import load_policy

        try:
            p = load_policy(file)
        except OysterError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(json.dumps(p.model_dump(mode="json"), ensure_ascii=False, indent=2))
            return
        table = Table(title=f"{p.label} — {len(p.taxonomy.categories)} categories")
        for col in ("id", "English", "中文", "group", "severity", "points"):
            table.add_column(col)
        for c in p.taxonomy.categories:
            table.add_row(c.id, c.name_en, c.name_zh, c.group, f"{c.severity:.1f}",
                          str(len(c.guidelines)))
        console = Console()
        console.print(table)
        g = p.game
        console.print(f"game: alpha={g.alpha} beta={g.beta} gamma={g.gamma} "
                      f"behaviour={g.behaviour.kind} prior={g.prior}")
