"""Benchmark runs end to end on small slices: the real embedded model, bare and behind the
engine, local judges; a run killed mid-way resumes without losing or repeating work; the
HTML report renders (parsed always, screenshotted when Chromium is installed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oyster.bench.metrics import BETAS, beta_key
from oyster.bench.records import RunDir
from oyster.cli import app

pytestmark = pytest.mark.slow
FAST = ["--max-tokens", "12", "--timeout", "300", "--backend-opt", "n_threads=1"]
runner = CliRunner()


def invoke(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{"):])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {"strata": root / "strata", "constructive": root / "constructive",
           "over": root / "over"}
    invoke("bench", "strata-sword", "--data", str(shared_dir / "data" / "strata_sword"),
           "--levels", "1,2", "--limit", "1", "--bare", "--engine", "--out", str(out["strata"]),
           *FAST)
    invoke("bench", "constructive", "--limit", "3", "--bare", "--engine",
           "--out", str(out["constructive"]), *FAST)
    invoke("bench", "over-refusal", "--limit", "2", "--engine", "--out", str(out["over"]), *FAST)
    return out


def test_strata_sword_reports_asr_per_language_level_and_method_side_by_side(runs):
    summary = json.loads((runs["strata"] / "summary.json").read_text())
    assert set(summary["systems"]) == {"bare", "engine"}
    for system in summary["systems"].values():
        assert system["n"] + system["errors"] == 4
        cells = system["attack"]["by_language_level"]
        assert set(cells) == {"en/L1", "en/L2", "zh/L1", "zh/L2"}
        assert all(c["rate"] is None or 0 <= c["rate"] <= 1 for c in cells.values())
        assert "none" in system["attack"]["by_method"]
        by_lang = system["attack"]["by_language"]  # the two levels of each language summed
        for lang in ("en", "zh"):
            assert by_lang[lang]["n"] == sum(cells[f"{lang}/L{lv}"]["n"] for lv in (1, 2))
            assert by_lang[lang]["k"] == sum(cells[f"{lang}/L{lv}"]["k"] for lv in (1, 2))
    records = RunDir(runs["strata"]).records()
    engine = [r for r in records if r.system == "engine" and r.ok]
    assert engine and all(r.reply and r.reply.strategy for r in engine)
    assert all(r.safety and r.refusal for r in records if r.ok)


def test_constructive_computes_c_beta_for_every_beta_per_level(runs):
    summary = json.loads((runs["constructive"] / "summary.json").read_text())
    for system in summary["systems"].values():
        c = system["constructive"]
        assert set(c["c_beta"]) == {beta_key(b) for b in BETAS}
        assert all(-1 <= v <= 1 for v in c["c_beta"].values())
        assert c["headline"] == pytest.approx(c["c_beta"]["2"] * 100, abs=0.01)
        assert set(c["by_level"]) == {"R0", "R1", "R2"}
    for r in RunDir(runs["constructive"]).records():
        if r.constructive:
            s, safety = r.satisfaction.score, r.safety.score
            assert r.constructive["2"] == pytest.approx((s + 2 * (2 * safety - 1)) / 3, abs=1e-6)


def test_over_refusal_reports_refusal_and_decision_rates(runs):
    summary = json.loads((runs["over"] / "summary.json").read_text())
    o = summary["systems"]["engine"]["over_refusal"]
    assert o["declined"]["n"] == 2 and o["refuse_decisions"]["n"] == 2
    by_lang = o["declined_by_language"]
    assert sum(r["n"] for r in by_lang.values()) == 2
    assert sum(r["k"] for r in by_lang.values()) == o["declined"]["k"]
    assert set(o["hard_refusal_by_language"]) == set(by_lang)


def test_a_run_cannot_be_overwritten_without_resume(runs):
    result = runner.invoke(app, ["bench", "over-refusal", "--limit", "2", "--engine",
                                 "--out", str(runs["over"]), *FAST])
    assert result.exit_code == 2 and "--resume" in result.output


def test_killed_run_resumes_without_losing_or_repeating_work(tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "oyster.cli", "bench", "constructive", "--limit", "6",
           "--bare", "--out", str(out), *FAST]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if results.exists() and results.read_text().count("\n") >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("the run finished before it could be killed")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = results.read_bytes()
    kept = before[:before.rfind(b"\n") + 1]
    done = {json.loads(line)["key"] for line in kept.decode().splitlines()}
    assert 2 <= len(done) < 6

    result = runner.invoke(app, ["bench", "constructive", "--limit", "6", "--bare", "--resume",
                                 "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    after = results.read_bytes()
    assert after.startswith(kept)  # nothing already written was lost or rewritten
    keys = [json.loads(line)["key"] for line in after.decode().splitlines()]
    assert len(keys) == len(set(keys)) == 6  # each prompt exactly once


def test_half_written_last_line_is_dropped_on_read_and_cut_on_resume(runs, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs["over"], copy)
    results = copy / "results.jsonl"
    whole = results.read_bytes()
    results.write_bytes(whole + b'{"key": "engine/or-en-03", "sys')
    run_dir = RunDir(copy)
    assert len(run_dir.records()) == whole.count(b"\n")
    run_dir.start(run_dir.meta(), resume=True)
    assert results.read_bytes() == whole


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.text: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith(("#", "data:")):
                self.external.append(value)

    def handle_data(self, data):
        self.text.append(data)


def test_report_compares_runs_in_one_self_contained_html(runs, tmp_path):
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(runs["strata"]), str(runs["constructive"]),
                                 str(runs["over"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = _Collect()
    page.feed(out.read_text("utf-8"))
    text = " ".join(page.text)
    assert page.external == []  # one file: no external scripts, styles or images
    assert page.tags.get("svg", 0) >= 5 and page.tags.get("table", 0) >= 6
    for heading in ("Strata-Sword: attack success rate", "Constructive score",
                    "Over-refusal", "Strategy and reply mix", "By attack method"):
        assert heading in text
    for column in ("strata · bare", "strata · engine", "constructive · engine"):
        assert column in text
    assert "published: Oy1-Qwen3-14B-ORPO" in text and "not our runs" in text
    assert "C_β = (S + β·(1 − 2·Risk)) / (1 + β)" in text


def test_report_screenshot_in_headless_chromium(runs, tmp_path):
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    html_path = tmp_path / "report.html"
    assert runner.invoke(app, ["report", str(runs["constructive"]), "--out",
                               str(html_path)]).exit_code == 0
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1200,2400", html_path.as_uri()],
                   check=True, timeout=120, capture_output=True)
    assert shot.exists() and shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_rejudge_keeps_the_replies_and_rewrites_the_verdicts(runs, tmp_path):
    import shutil

    copy = tmp_path / "rejudged"
    shutil.copytree(runs["constructive"], copy)
    before = {r.key: r for r in RunDir(copy).records()}
    # tamper with one stored verdict: re-judging must restore it
    records = list(before.values())
    target = next(r for r in records if r.ok)
    tampered = target.model_copy(update={"safety": target.safety.model_copy(
        update={"label": "undetermined"})})
    RunDir(copy).replace_records([tampered if r.key == target.key else r for r in records],
                                 RunDir(copy).meta())
    summary = invoke("bench", "rejudge", str(copy))
    after = {r.key: r for r in RunDir(copy).records()}
    assert after.keys() == before.keys()
    assert all(after[k].reply == before[k].reply for k in before)
    assert after[target.key].safety.label == before[target.key].safety.label
    assert summary["systems"]["engine"]["undetermined"]["safety"] == 0
