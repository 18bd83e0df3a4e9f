"""Databases by location (SQLite file or PostgreSQL URL), versioned schema migrations, and
the audit log and key store on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time

import pytest
from typer.testing import CliRunner

from oyster.cli import app
from oyster.errors import InputError
from oyster.serve import audit as audit_module
from oyster.serve import keys as keys_module
from oyster.serve.audit import AuditError, AuditLog, AuditRecord, count, export, tail
from oyster.serve.keys import KeyIdentity, KeyStore
from oyster.serve.storage import (
    StorageError,
    migrate,
    open_database,
    parse_location,
    redact,
    schema_version,
)

runner = CliRunner()


def _record(i: int, **fields) -> AuditRecord:
    return AuditRecord(id=f"r{i}", time=1_000.0 + i, endpoint="decide", policy="p@1",
                       latency_ms=1.0, **({"level": "R0", "strategy": "answer",
                                           "outcome": "decided"} | fields))


def test_locations_are_files_or_postgresql_urls_and_nothing_else(tmp_path):
    assert parse_location(tmp_path / "a.db").kind == "sqlite"
    pg = parse_location("postgresql://u:secret@db.internal:5432/oyster")
    assert pg.kind == "postgresql" and "secret" not in str(pg)
    assert redact("postgres://u:pw@h/db") == "postgres://u:***@h/db"
    for bad in ("mysql://h/db", "redis://h:6379/0", "postgresql:/h/db", ""):
        with pytest.raises(InputError):
            parse_location(bad)


def test_an_unsupported_url_never_becomes_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["serve", "keys", "add", "x", "--keys-db", "mysql://h/db"])
    assert result.exit_code == 2 and "unsupported scheme 'mysql'" in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_old_sqlite_audit_log_is_migrated_keeping_its_rows(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the schema Oyster wrote before versions existed
        conn.executescript(audit_module.MIGRATIONS[0].sqlite)
        conn.execute("INSERT INTO decisions (id, time, key_id, endpoint, level, strategy, "
                     "outcome, record) VALUES ('old', 1.0, NULL, 'chat', 'R1', 'guide', "
                     "'passed', ?)", (_record(0, status=502).model_dump_json(),))
    with AuditLog(path) as log:
        log.append(_record(1, level=None, strategy=None, outcome="rejected", status=429))
    db = open_database(parse_location(path))
    try:
        assert schema_version(db, "audit") == len(audit_module.MIGRATIONS)
        assert db.execute("SELECT id, status, level FROM decisions ORDER BY seq") == [
            ("old", 502, "R1"), ("r1", 429, None)]
    finally:
        db.close()
    assert [r.id for r in export(path)] == ["r0", "r1"]  # the old row's record reads back


def test_a_database_from_a_newer_oyster_is_refused(tmp_path):
    path = tmp_path / "audit.db"
    with AuditLog(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE oyster_schema SET version = 99 WHERE component = 'audit'")
    with pytest.raises(AuditError, match="version 99, newer than this Oyster"):
        AuditLog(path).open()


def test_replicas_starting_together_migrate_once(pg_url):
    errors: list[BaseException] = []

    def start() -> None:
        try:
            db = open_database(parse_location(pg_url))
            try:
                migrate(db, "audit", audit_module.MIGRATIONS)
            finally:
                db.close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = open_database(parse_location(pg_url))
    try:
        assert db.execute("SELECT component, version FROM oyster_schema") == [
            ("audit", len(audit_module.MIGRATIONS))]
    finally:
        db.close()


def test_audit_log_on_postgresql(pg_url):
    async def many(log: AuditLog) -> None:
        await asyncio.gather(*(log.aappend(_record(i)) for i in range(200)))

    with AuditLog(pg_url) as log:
        asyncio.run(many(log))
        assert count(pg_url) == 200  # committed before aappend returned
        log.append(_record(999, level=None, strategy=None, outcome="rejected", status=401))
        log.check()
    assert [r.id for _, r in tail(pg_url, 2)] == ["r199", "r999"]
    rows = list(export(pg_url, since=1_000.0 + 10, until=1_000.0 + 20))
    assert [r.id for r in rows] == [f"r{i}" for i in range(10, 20)]
    # a duplicate id fails its batch
    with pytest.raises(AuditError, match="cannot write"), AuditLog(pg_url) as log:
        log.append(_record(1))


def test_unreachable_postgresql_is_a_clear_error(tmp_path):
    from oyster.serve.testing import free_port

    url = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    t = time.monotonic()
    with pytest.raises(AuditError, match="cannot connect"):
        AuditLog(url, connect_timeout_s=1).open()
    with pytest.raises(StorageError):
        open_database(parse_location(url), connect_timeout_s=1)
    assert time.monotonic() - t < 10


def test_keys_and_audit_commands_on_postgresql(pg_url):
    added = runner.invoke(app, ["serve", "keys", "add", "team-a", "--scope", "inspect",
                                "--keys-db", pg_url])
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()
    store = KeyStore(pg_url)
    try:
        assert store.verify(key) == KeyIdentity(name="team-a", scopes=frozenset({"inspect"}))
        assert store.active_count() == 1
        assert key not in json.dumps([i.model_dump() for i in store.list()])
    finally:
        store.close()
    again = runner.invoke(app, ["serve", "keys", "add", "team-a", "--keys-db", pg_url])
    assert again.exit_code == 2 and "exists already" in again.output
    assert runner.invoke(app, ["serve", "keys", "revoke", "team-a", "--keys-db", pg_url]
                         ).exit_code == 0
    listed = runner.invoke(app, ["serve", "keys", "list", "--keys-db", pg_url, "--json"])
    assert json.loads(listed.stdout)["revoked"] is not None

    check = runner.invoke(app, ["serve", "migrate", "--audit-db", pg_url, "--check"])
    assert check.exit_code == 1 and "schema version 0" in check.stdout
    done = runner.invoke(app, ["serve", "migrate", "--audit-db", pg_url, "--keys-db", pg_url])
    assert done.exit_code == 0 and f"0 -> {len(audit_module.MIGRATIONS)}" in done.stdout
    with AuditLog(pg_url) as log:
        log.append(_record(1))
    tailed = runner.invoke(app, ["audit", "tail", "--db", pg_url, "--json"])
    assert tailed.exit_code == 0 and json.loads(tailed.stdout)["id"] == "r1"
    exported = runner.invoke(app, ["audit", "export", "--db", pg_url, "--format", "csv"])
    assert exported.exit_code == 0 and exported.stdout.count("\n") == 2


def test_writes_and_lookups_survive_lost_connections(pg_url):
    """What a database restart or failover does to the pools: every connection dies."""
    import psycopg

    store = KeyStore(pg_url)
    key = store.add("team").key
    with AuditLog(pg_url) as log:
        log.append(_record(1))
        with psycopg.connect(pg_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'oyster' AND pid <> pg_backend_pid()").fetchall()
        assert len(killed) >= 2  # the audit writer's and the key store's
        log.append(_record(2))  # retried on a fresh connection
        assert store.verify(key) == KeyIdentity(name="team")
    store.close()
    assert [r.id for r in export(pg_url)] == ["r1", "r2"]


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_key_database_from_before_scopes_is_migrated_and_its_keys_have_none(
        store, tmp_path, request):
    location = str(tmp_path / "keys.db") if store == "sqlite" else request.getfixturevalue(
        "pg_url")
    db = open_database(parse_location(location))
    try:  # the key database as it was before scopes (schema version 1), with one key
        migrate(db, "keys", keys_module.MIGRATIONS[:1])
        db.execute("INSERT INTO api_keys (name, hash, created) VALUES (?, ?, ?)",
                   ("legacy", keys_module.hash_key("oys-legacy-secret"), 1.0))
    finally:
        db.close()
    keys = KeyStore(location)  # opening it migrates it
    try:
        assert keys.verify("oys-legacy-secret") == KeyIdentity(name="legacy")
        added = keys.add("ops", ["admin"])
        assert keys.verify(added.key) == KeyIdentity(name="ops", scopes=frozenset({"admin"}))
        assert [(k.name, k.scopes) for k in keys.list()] == [("legacy", []), ("ops", ["admin"])]
    finally:
        keys.close()
    db = open_database(parse_location(location))
    try:
        assert schema_version(db, "keys") == len(keys_module.MIGRATIONS) == 2
    finally:
        db.close()
