"""The `train` Typer sub-app: help texts, an end-to-end tiny run, and error output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from oyster.train.cli import make_app, register

runner = CliRunner()


def test_register_adds_train_group() -> None:
    app = typer.Typer()

    @app.command()
    def version() -> None:
        """Print the version."""

    register(app)
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for cmd in ("sft", "orpo", "convert-embedded"):
        assert cmd in result.output


@pytest.mark.parametrize("cmd", ["sft", "orpo"])
def test_command_help(cmd: str) -> None:
    result = runner.invoke(make_app(), [cmd, "--help"], terminal_width=200)
    assert result.exit_code == 0
    for opt in ("--model", "--data", "--out", "--max-steps", "--lora", "--bf16", "--resume"):
        assert opt in result.output


def test_convert_help() -> None:
    result = runner.invoke(make_app(), ["convert-embedded", "--help"], terminal_width=200)
    assert result.exit_code == 0 and "--out" in result.output


def test_cli_bad_data_reports_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": [], "chosen": [], "rejected": []}\n', encoding="utf-8")
    result = runner.invoke(make_app(), ["sft", "--model", "tiny", "--data", str(bad),
                                        "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "bad.jsonl:1" in result.output and "train orpo" in result.output


def test_cli_bad_option(tmp_path: Path, sft_file: Path) -> None:
    result = runner.invoke(make_app(), ["sft", "--model", "tiny", "--data", str(sft_file),
                                        "--out", str(tmp_path / "o"), "--max-steps", "0"])
    assert result.exit_code == 2 and "max_steps" in result.output


def test_cli_sft_tiny(tmp_path: Path, sft_file: Path) -> None:
    pytest.importorskip("trl")
    out = tmp_path / "o"
    result = runner.invoke(make_app(), ["sft", "--model", "tiny", "--data", str(sft_file),
                                        "--out", str(out), "--max-steps", "2",
                                        "--max-length", "256", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "sft: 2 steps" in result.output and f"hf:{out}" in result.output
    assert json.loads((out / "train_result.json").read_text())["global_step"] == 2
