"""`oyster serve` as a real process (killed hard: no answered request may be missing from
the audit log), `oyster serve keys ...` and `oyster audit tail|export`."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from oyster.cli import app
from oyster.serve.audit import count
from oyster.serve.keys import KeyStore
from oyster.serve.testing import free_port

runner = CliRunner()


def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "oyster.cli", "serve", "--port", str(port),
         "--audit-db", str(tmp_path / "audit.db"), "--log-level", "warning", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(f"{url}/healthz", timeout=1).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"oyster serve did not start: {err.decode()[-2000:]}")


def test_killed_server_loses_no_answered_request(tmp_path, fake_upstream):
    keys = KeyStore(tmp_path / "keys.db")
    key = keys.add("ci").key
    keys.close()
    proc, url = _serve(tmp_path, "--upstream", fake_upstream.spec(), "--keys-db",
                       str(tmp_path / "keys.db"))
    try:
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"},
                          timeout=30) as client:  # a busy machine: first decisions are slow
            for i in range(20):
                r = client.post("/v1/chat/completions", json={
                    "model": "m", "messages": [{"role": "user", "content": f"hello {i}"}]})
                assert r.status_code == 200
            assert client.post("/v1/chat/completions", headers={"authorization": "Bearer x"},
                               json={"model": "m", "messages": []}).status_code == 401
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown, no flush: a crash
        proc.wait(timeout=10)
    assert count(tmp_path / "audit.db") == 21  # the 401 included

    tail = runner.invoke(app, ["audit", "tail", "--db", str(tmp_path / "audit.db"),
                               "-n", "3", "--json"])
    assert tail.exit_code == 0, tail.output
    rows = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(rows) == 3 and [r.get("key_id") for r in rows] == ["ci", "ci", None]
    assert rows[-1]["status"] == 401

    out = tmp_path / "audit.csv"
    exported = runner.invoke(app, ["audit", "export", "--db", str(tmp_path / "audit.db"),
                                   "--format", "csv", "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    table = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(table) == 21 and json.loads(table[0]["user_type"]).keys() >= {"benign"}

    later = runner.invoke(app, ["audit", "export", "--db", str(tmp_path / "audit.db"),
                                "--since", str(time.time() + 60)])
    assert later.exit_code == 0 and later.stdout == ""


def test_serve_refuses_a_key_database_without_keys(tmp_path):
    result = runner.invoke(app, ["serve", "--upstream", "none",
                                 "--keys-db", str(tmp_path / "empty.db")])
    assert result.exit_code == 2 and "no active API keys" in result.output


def test_keys_add_list_revoke(tmp_path):
    db = str(tmp_path / "keys.db")
    added = runner.invoke(app, ["serve", "keys", "add", "team-a", "--keys-db", db])
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()
    assert key.startswith("oys-") and KeyStore(db).verify(key).name == "team-a"
    assert KeyStore(db).verify(key).scopes == frozenset()
    inspector = runner.invoke(app, ["serve", "keys", "add", "ops", "--scope", "inspect",
                                    "--scope", "admin", "--keys-db", db]).stdout.strip()
    assert KeyStore(db).verify(inspector).scopes == {"inspect", "admin"}
    bad = runner.invoke(app, ["serve", "keys", "add", "x", "--scope", "root", "--keys-db", db])
    assert bad.exit_code == 2 and "unknown scope" in bad.output
    assert key.encode() not in Path(db).read_bytes()

    again = runner.invoke(app, ["serve", "keys", "add", "team-a", "--keys-db", db])
    assert again.exit_code == 2 and "exists already" in again.output
    listed = runner.invoke(app, ["serve", "keys", "list", "--keys-db", db, "--json"])
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["name"], r["scopes"]) for r in rows] == [("team-a", []),
                                                        ("ops", ["inspect", "admin"])]
    assert key not in listed.stdout
    assert runner.invoke(app, ["serve", "keys", "revoke", "team-a", "--keys-db", db]
                         ).exit_code == 0
    assert KeyStore(db).verify(key) is None


@pytest.mark.parametrize("args", [["audit", "tail"], ["audit", "export"]])
def test_audit_commands_name_a_missing_log(tmp_path, args):
    result = runner.invoke(app, [*args, "--db", str(tmp_path / "nope.db")])
    assert result.exit_code == 2 and "no audit log here" in result.output


def _children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_two_workers_share_the_port_the_audit_log_and_the_rate_limit(tmp_path, fake_upstream,
                                                                    redis_url):
    """`serve --workers 2`: two worker processes answer on one port; every request has its
    row in the one SQLite audit log; with --state the rate limit is the port's, not 2x."""
    proc, url = _serve(tmp_path, "--workers", "2", "--state", redis_url, "--no-console",
                       "--assessor", "lexicon", "--upstream", fake_upstream.spec(),
                       "--rate-limit", "6")
    try:
        deadline = time.monotonic() + 60  # both workers up (the first may answer alone)
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_children(proc.pid)) >= 2
        statuses, start = [], time.monotonic()
        for i in range(16):  # new connections: the kernel spreads them over the workers
            r = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
                "model": "m", "messages": [{"role": "user", "content": f"hello {i}"}]})
            statuses.append(r.status_code)
            if r.status_code == 200:
                assert r.json()["choices"][0]["message"]["content"]
        # one bucket of 6 for the port (2 buckets would pass 12), plus what refilled
        refilled = (time.monotonic() - start) * 6 / 60
        assert 6 <= statuses.count(200) <= 6 + refilled + 1, statuses
        assert statuses.count(200) + statuses.count(429) == 16, statuses
    finally:
        children = _children(proc.pid)
        proc.terminate()  # uvicorn's supervisor stops its workers
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for pid in [proc.pid, *children]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert count(tmp_path / "audit.db") == 16


@pytest.mark.parametrize(("args", "says"), [
    (["--no-console"], "needs --state"),
    (["--state", "redis://127.0.0.1:1/0"], "--no-console"),
])
def test_workers_refuse_state_kept_in_one_process(args, says):
    result = runner.invoke(app, ["serve", "--upstream", "none", "--workers", "2", *args])
    assert result.exit_code == 2 and says in result.output
