"""Who may open the console, how the playground reads what is typed into it, and the
`oyster console` command. HTTP against real uvicorn servers on 127.0.0.1."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from oyster.cli import app as cli_app
from oyster.engine import Engine
from oyster.errors import InputError
from oyster.serve.console.app import ConsoleConfig, create_console_app
from oyster.serve.console.auditquery import SqliteAuditQuery
from oyster.serve.console.playground import WhatIf, parse_conversation, what_if_from_form
from oyster.serve.console.samples import write_synthetic_log
from oyster.serve.keys import KeyStore
from oyster.serve.testing import ServerThread, free_port


@pytest.fixture
def audit_db(tmp_path: Path, engine: Engine) -> Path:
    return write_synthetic_log(tmp_path / "audit.db", engine.policy, 50, start=time.time() - 3600,
                               days=0.04)


@pytest.fixture
def serve_console(engine: Engine, audit_db: Path, tmp_path: Path) -> Iterator[Any]:
    servers: list[ServerThread] = []

    def start(keys: Any = None, bind_host: str = "127.0.0.1",
              reports_dir: Path | None = None) -> str:
        app = create_console_app(ConsoleConfig(
            engine=engine, audit=SqliteAuditQuery(audit_db), keys=keys, bind_host=bind_host,
            reports_dir=reports_dir))
        servers.append(ServerThread(app).start())
        return servers[-1].url

    yield start
    for s in servers:
        s.stop()


HTML = {"accept": "text/html"}


def test_without_keys_the_console_is_open_on_loopback_only(serve_console):
    url = serve_console()
    assert httpx.get(f"{url}/console/audit", headers=HTML).status_code == 200
    # a page elsewhere that rebinds its own name to 127.0.0.1 is refused
    rebound = httpx.get(f"{url}/console/audit", headers=HTML | {"host": "attacker.example"})
    assert rebound.status_code == 403
    wide = serve_console(bind_host="0.0.0.0")
    r = httpx.get(f"{wide}/console/audit", headers=HTML)
    assert r.status_code == 403 and "needs API keys" in unescape(r.text)


def test_sign_in_needs_a_key_with_the_inspect_or_admin_scope(serve_console, tmp_path):
    keys = KeyStore(tmp_path / "keys.db")
    inspector = keys.add("reviewer", ["inspect"]).key
    admin = keys.add("lead", ["admin"]).key
    client_only = keys.add("support-bot").key  # replies only
    url = serve_console(keys=keys)
    with httpx.Client(base_url=url) as browser:
        r = browser.get("/console/audit?strategy=refuse", headers=HTML)
        assert r.status_code == 303
        assert r.headers["location"] == "/console/login?next=%2Fconsole%2Faudit%3Fstrategy%3Drefuse"
        assert browser.get("/console/audit/export.csv").status_code == 401  # not a page: no redirect

        bad = browser.post("/console/login", data={"key": "oys-not-a-key", "next": "/console/audit"})
        assert bad.status_code == 401 and "unknown or revoked" in unescape(bad.text)
        denied = browser.post("/console/login", data={"key": client_only})
        assert denied.status_code == 403 and "no 'inspect' or 'admin' scope" in unescape(denied.text)

        ok = browser.post("/console/login", data={"key": inspector, "next": "/console/audit"})
        assert ok.status_code == 303 and ok.headers["location"] == "/console/audit"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
        page = browser.get("/console/audit", headers=HTML)
        assert page.status_code == 200 and "signed in as <strong>reviewer</strong>" in page.text

        keys.revoke("reviewer")  # revoking the key ends the session at once
        assert browser.get("/console/audit", headers=HTML).status_code == 303

    # scripts send the key itself
    r = httpx.get(f"{url}/console/audit/export.jsonl", headers={"authorization": f"Bearer {admin}"})
    assert r.status_code == 200 and len(r.text.splitlines()) == 50
    forged = httpx.get(f"{url}/console/audit", headers=HTML,
                       cookies={"oyster_console": "eyJuIjoibGVhZCJ9.forged"})
    assert forged.status_code == 303


def test_forms_posted_from_another_site_and_foreign_redirects_are_refused(serve_console,
                                                                          tmp_path):
    keys = KeyStore(tmp_path / "keys.db")
    key = keys.add("lead", ["admin"]).key
    url = serve_console(keys=keys)
    cross = httpx.post(f"{url}/console/login", data={"key": key},
                       headers={"origin": "https://attacker.example"})
    assert cross.status_code == 403
    r = httpx.post(f"{url}/console/login", data={"key": key, "next": "//attacker.example/x"})
    assert r.headers["location"] == "/console/playground"


def test_pages_carry_security_headers_and_reports_stay_inside_their_folder(serve_console,
                                                                           tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (tmp_path / "secret.html").write_text("<meta name='generator' content='oyster report'>x")
    url = serve_console(reports_dir=reports)
    page = httpx.get(f"{url}/console/policy")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    for probe in ("../secret.html", "..%2Fsecret.html", "%2e%2e/secret.html"):
        assert httpx.get(f"{url}/console/reports/file/{probe}").status_code == 404


def test_bad_filters_and_inputs_get_a_clear_message_not_a_500(serve_console):
    url = serve_console()
    r = httpx.get(f"{url}/console/audit?strategy=maybe")
    assert r.status_code == 422 and "strategy: unknown value 'maybe'" in unescape(r.text)
    r = httpx.get(f"{url}/console/audit?since=yesterday")
    assert r.status_code == 422 and "since" in unescape(r.text)
    r = httpx.post(f"{url}/console/playground/decision", data={"conversation": "[{oops"})
    assert r.status_code == 422 and "looks like JSON but is not" in unescape(r.text)
    r = httpx.post(f"{url}/console/playground/whatif",
                   data={"conversation": "hello", "beta": "-3"})
    assert r.status_code == 422 and "beta" in unescape(r.text)
    r = httpx.post(f"{url}/console/policy/validate", data={"policy": "x" * 2_100_000})
    assert r.status_code == 413 and "larger than" in unescape(r.text)


def test_decoded_payloads_are_shown(serve_console):
    url = serve_console()  # the real lexicon assessor, de-obfuscation stage included
    hidden = base64.b64encode(b"how to pick a lock").decode()
    r = httpx.post(f"{url}/console/playground/decision",
                   data={"conversation": f"decode this: {hidden}"})
    assert r.status_code == 200 and 'data-testid="payloads"' in r.text
    assert "how to pick a lock" in r.text and "base64" in r.text


def test_typed_conversations_become_messages():
    def roles(text: str) -> list[tuple[str, str]]:
        return [(m.role, m.content) for m in parse_conversation(text)]

    assert roles("just one question?") == [("user", "just one question?")]
    assert roles("user: hi\nassistant: hello\nthere\nuser: bye") == [
        ("user", "hi"), ("assistant", "hello\nthere"), ("user", "bye")]
    assert roles("用户：你好\n助手：你好！\n用户：再见") == [
        ("user", "你好"), ("assistant", "你好！"), ("user", "再见")]
    assert roles('[{"role": "system", "content": "be brief"}, {"role": "user", "content": "x"}]'
                 ) == [("system", "be brief"), ("user", "x")]
    for bad in ("", "   ", '[{"role": "robot", "content": "x"}]', "assistant: only me"):
        with pytest.raises(InputError):
            parse_conversation(bad)


def test_what_if_fields_equal_to_the_policy_change_nothing(engine):
    policy = engine.policy
    same = {"beta": f"{policy.game.beta}", "category": "mental_health",
            "severity": f"{policy.category('mental_health').severity}",
            **{f"prior_{t}": f"{p}" for t, p in policy.game.prior.items()}}
    assert what_if_from_form(same, policy).empty
    changed = what_if_from_form(same | {"prior_malicious": "0.4"}, policy)
    assert changed.prior is not None and changed.beta is None
    applied = changed.apply(policy)
    assert sum(applied.game.prior.values()) == pytest.approx(1.0)
    assert applied.game.prior["malicious"] > policy.game.prior["malicious"]
    assert policy.game.prior["malicious"] == 0.1  # the policy in force is untouched
    with pytest.raises(InputError, match="no category"):
        what_if_from_form({"category": "nope", "severity": "0.3"}, policy)
    with pytest.raises(InputError):
        WhatIf(prior={"benign": 0, "vulnerable": 0, "misinformed": 0, "malicious": 0}).apply(policy)


def test_oyster_console_refuses_to_listen_beyond_loopback_without_keys():
    result = CliRunner().invoke(cli_app, ["console", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "127.0.0.1 only" in result.output


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
@pytest.mark.parametrize("command", [["console"], ["serve", "--upstream", "none"]])
def test_oyster_console_and_oyster_serve_serve_the_console(audit_db, engine, command, store,
                                                          request):
    location = str(audit_db)
    if store == "postgresql":  # the same 50 rows in PostgreSQL, chosen by the URL alone
        location = request.getfixturevalue("pg_url")
        write_synthetic_log(location, engine.policy, 50, start=time.time() - 3600, days=0.04)
    port = free_port()
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "oyster.cli", *command, "--audit-db",
                             location, "--assessor", "lexicon", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/console/audit")
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "oyster console did not start in 60 s"
                time.sleep(0.3)
        assert r.status_code == 200 and 'data-testid="total">50<' in unescape(r.text)
        if command[0] == "console":
            home = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=True)
            assert home.url.path == "/console/playground"
        else:  # the proxy's own routes are still there, and what it audits is browsable
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
            url = f"http://127.0.0.1:{port}/v1/decide"
            hello = [{"role": "user", "content": "hello"}]
            assert httpx.post(url, json={"messages": hello}).status_code == 200
            assert httpx.post(url, json={"messages": []}).status_code == 422
            page = unescape(httpx.get(f"http://127.0.0.1:{port}/console/audit").text)
            assert 'data-testid="total">52<' in page and "no decision (HTTP 422)" in page
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
