"""The audit log itself: WAL mode, group commit under concurrency, and no answer without a
committed row."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import httpx

from oyster.serve.app import create_app
from oyster.serve.audit import AuditLog, AuditRecord, count, export, tail
from oyster.serve.testing import ServerThread


def _record(i: int) -> AuditRecord:
    return AuditRecord(id=f"r{i}", time=time.time(), endpoint="decide", policy="p@1",
                       level="R0", categories=[], attacks=[],
                       user_type={"benign": 1.0}, strategy="answer",
                       utilities={"answer": 1.0}, outcome="decided", latency_ms=1.0,
                       decide_ms=0.5)


def test_concurrent_appends_are_all_committed_in_wal_mode(tmp_path):
    path = tmp_path / "audit.db"

    async def many() -> None:
        await asyncio.gather(*(log.aappend(_record(i)) for i in range(300)))

    with AuditLog(path) as log:
        asyncio.run(many())
        assert count(path) == 300  # committed before close
    assert [r.id for r in export(path)] == [f"r{i}" for i in range(300)]
    assert [r.id for _, r in tail(path, 2)] == ["r298", "r299"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_cancelled_request_still_gets_its_row_and_the_writer_keeps_going(tmp_path):
    # a client that disconnects cancels its task, and with it the row's future: the row is
    # still written, and the writer thread must not die on the cancelled future (it did:
    # every later request then waited forever for its row)
    path = tmp_path / "audit.db"
    with AuditLog(path) as log:
        cancelled = 0
        for i in range(200):
            cancelled += log.submit(_record(i)).cancel()
        assert cancelled  # at least one row was cancelled before the writer took it
        log.submit(_record(200)).result(timeout=30)
        assert count(path) == 201


def test_a_request_whose_row_cannot_be_written_is_not_answered(tmp_path, engine):
    path = tmp_path / "audit.db"
    app = create_app(engine.policy.serve, engine, None, AuditLog(path, busy_timeout_s=0.2))
    with ServerThread(app) as server:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        r = httpx.post(f"{server.url}/v1/decide",
                       json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 503 and r.json()["error"]["type"] == "audit_error"
        blocker.execute("ROLLBACK")
        r = httpx.post(f"{server.url}/v1/decide",
                       json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        blocker.close()
        chat = httpx.post(f"{server.url}/v1/chat/completions",  # no upstream: decisions only
                          json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 503
    # the refused decide has no row (none could be written); the 503 chat has its own
    answered, refused = export(path)
    assert answered.id == r.json()["oyster"]["request_id"] and answered.status == 200
    assert (refused.id, refused.status, refused.outcome) == (
        chat.headers["x-oyster-request-id"], 503, "error")
    assert refused.level is None and refused.error.startswith("service_unavailable")
