"""`oyster lingobp run|export|summary|bare|card`: end to end with the embedded model and the local
judges, and the errors a user meets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oyster.cli import app
from oyster.lingobp import RunStore
from oyster.train.data import load_sft

runner = CliRunner()


def invoke(*args: str) -> object:
    return runner.invoke(app, ["lingobp", *args])


@pytest.mark.slow
def test_run_export_and_summary_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"id": "fire", "prompt": "A pan of oil caught fire while I was "
                                "frying. What should I do?", "level": "R0"}) + "\n", "utf-8")
    out = tmp_path / "run"
    result = invoke("run", "--data", str(data), "--backend", "embedded", "--judge", "local",
                    "--rounds", "1", "--max-tokens", "40", "--timeout", "600", "--out", str(out),
                    "--json")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    payload = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert payload["report"]["finished_now"] == 1
    rows = {r["round"]: r for r in payload["numbers"]["rounds"]}
    assert {"0", "best"} <= set(rows) and rows["0"]["queries"] == 1
    (finished,) = RunStore(out).results()
    assert finished.rounds[0].decision.chain.user_needs
    manifest = json.loads((out / "run.json").read_text("utf-8"))
    assert (manifest["backend"], manifest["judge"], manifest["editor"]) == \
        ("embedded", "local", "rule")

    again = invoke("run", "--data", str(data), "--judge", "local", "--rounds", "1",
                   "--max-tokens", "40", "--timeout", "600", "--out", str(out), "--resume",
                   "--json")
    assert json.loads(again.stdout)["report"]["already_finished"] == 1  # type: ignore[attr-defined]

    sft = tmp_path / "sft.jsonl"
    exported = invoke("export", str(out), "--format", "sft", "--out", str(sft),
                      "--min-safety", "0", "--json")
    assert json.loads(exported.stdout)["rows"] == 1  # type: ignore[attr-defined]
    (example,) = load_sft(sft)
    assert example.completion.content.startswith("<think>User needs:")
    pref = invoke("export", str(out), "--format", "preference", "--out",
                  str(tmp_path / "pref.jsonl"))
    assert pref.exit_code == 0 and "preference rows from 1 queries" in pref.stdout  # type: ignore[attr-defined]
    summary = invoke("summary", str(out))
    assert "| round |" in summary.stdout  # type: ignore[attr-defined]

    bare = invoke("bare", str(out), "--max-tokens", "40", "--json")
    assert json.loads(bare.stdout)["bare_replies"] == 1  # type: ignore[attr-defined]
    again = invoke("bare", str(out), "--json")  # nothing left to ask
    assert json.loads(again.stdout)["bare_replies"] == 1  # type: ignore[attr-defined]
    card = json.loads(invoke("card", str(out), "--min-safety", "0", "--json"
                             ).stdout)  # type: ignore[attr-defined]
    assert (card["queries"], card["sft_rows"], card["bare_replies"]) == (1, 1, 1)
    assert card["by"]["level"]["R0"]["sft_rows"] == 1
    assert sum(card["chosen_source"].values()) == 1


def test_user_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "q.jsonl"
    data.write_text('{"id": "a", "prompt": "hi"}\n{broken\n', "utf-8")
    bad_data = invoke("run", "--data", str(data), "--out", str(tmp_path / "r"))
    assert bad_data.exit_code == 2 and "q.jsonl:2: malformed JSON" in bad_data.output  # type: ignore[attr-defined]
    bad_mode = invoke("run", "--data", str(data), "--out", str(tmp_path / "r"), "--mode", "x")
    assert bad_mode.exit_code == 2 and "--mode must be one of" in bad_mode.output  # type: ignore[attr-defined]
    data.write_text('{"id": "a", "prompt": "hi"}\n', "utf-8")
    bad_editor = invoke("run", "--data", str(data), "--out", str(tmp_path / "r"),
                        "--editor", "magic")
    assert bad_editor.exit_code == 2 and "unknown editor" in bad_editor.output  # type: ignore[attr-defined]
    not_run = invoke("export", str(tmp_path), "--format", "sft", "--out", str(tmp_path / "x"))
    assert not_run.exit_code == 2 and "not a Lingo-BP run" in not_run.output  # type: ignore[attr-defined]
    bad_format = invoke("export", str(tmp_path), "--format", "csv", "--out", str(tmp_path / "x"))
    assert bad_format.exit_code == 2  # type: ignore[attr-defined]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine", "utf-8")
    taken = invoke("run", "--data", str(data), "--out", str(busy))
    assert taken.exit_code == 2 and "not empty" in taken.output  # type: ignore[attr-defined]


def test_judge_and_editor_specs_resolve_against_the_backend() -> None:
    from oyster.errors import InputError
    from oyster.lingobp import RunSpec

    remote = "openai:qwen@http://127.0.0.1:8000/v1"
    assert RunSpec(backend=remote, judge="llm").judges == f"llm:{remote}"
    assert RunSpec(backend=remote, judge="llm").edits == f"llm:{remote}"  # auto follows the judges
    assert RunSpec(judge="local").edits == "rule"
    assert RunSpec(judge="local", editor="llm").edits == "llm:embedded"
    assert RunSpec(judge="llm:embedded", editor="rule").edits == "rule"
    with pytest.raises(InputError, match="unknown editor"):
        _ = RunSpec(editor="llm:").edits
