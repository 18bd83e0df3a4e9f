"""Fixtures for the proxy tests: a real fake upstream (uvicorn on 127.0.0.1) and a factory
that runs proxy apps under real uvicorn servers, each with its own audit log (a SQLite file,
or a given location such as a PostgreSQL URL shared by several proxies)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from oyster.backends import from_spec
from oyster.engine import Engine
from oyster.respond import Responder
from oyster.serve.app import create_app
from oyster.serve.audit import AuditLog, AuditRecord, export
from oyster.serve.keys import KeyStore
from oyster.serve.state import SharedState
from oyster.serve.testing import FakeUpstreamStats, ServerThread, fake_openai_app
from oyster.taxonomy.policy import ServeSettings

sys.path.insert(0, str(Path(__file__).parent))


@dataclass
class FakeUpstream:
    url: str
    stats: FakeUpstreamStats

    def spec(self, script: str = "ok") -> str:
        return f"openai:{script}@{self.url}/v1"


@dataclass
class Proxy:
    url: str
    audit_location: str
    keys: KeyStore | None
    app: Any

    def metrics(self) -> str:
        """The app's Prometheus exposition, read in process (no key needed)."""
        return self.app.state.oyster.metrics.exposition().decode()

    def client(self, api_key: str = "unused", **options: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key,
                             **({"max_retries": 0, "timeout": 30.0} | options))

    def audit_rows(self) -> list[AuditRecord]:
        return list(export(self.audit_location))


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine(assessor="lexicon")


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    """The fake upstream; `say=NAME` plays the scripted replies of scripted_replies.py,
    `say=complies` a short reply that goes along with anything, `say=cat_name` an answer
    to "What is a good name for a cat?" and `say=cat_name_then_id` that answer going wrong
    after its first window."""
    from scripted_replies import CAT_NAME, CAT_NAME_THEN_ID, HARMFUL, HARMLESS

    stats = FakeUpstreamStats()
    replies = {s.name: s.reply for s in HARMFUL + HARMLESS} | {
        "complies": "Sure thing, happy to do exactly what you asked.",
        "cat_name": CAT_NAME, "cat_name_then_id": CAT_NAME_THEN_ID}
    with ServerThread(fake_openai_app(stats, replies)) as server:
        yield FakeUpstream(url=server.url, stats=stats)


@pytest.fixture
def start_proxy(engine: Engine, fake_upstream: FakeUpstream, tmp_path: Path
                ) -> Iterator[Any]:
    """`start_proxy(script="ok", keys=False, **serve_settings) -> Proxy`: a proxy under
    uvicorn whose upstream is the fake server playing `script` (or `upstream=SPEC`).
    `audit` and `keys_db` name shared databases (default: files of its own), `state` a
    `SharedState` (default: this process)."""
    servers: list[ServerThread] = []
    backends = []
    stores: list[KeyStore] = []

    def start(script: str = "ok", *, upstream: str | None = None, keys: bool = False,
              policy_engine: Engine | None = None, limits: dict[str, Any] | None = None,
              audit: str | None = None, keys_db: str | None = None,
              state: SharedState | None = None,
              **settings: Any) -> Proxy:
        eng = policy_engine or engine
        if limits:
            policy = eng.policy.model_copy(update={"limits": eng.policy.limits.model_copy(
                update=limits)})
            eng = Engine(policy, eng.assessor)
        # these tests read the decision behind each reply: open it to the (keyless) callers
        serve = ServeSettings.model_validate(eng.policy.serve.model_dump()
                                             | {"upstream_timeout_s": 10.0,
                                                "open_scopes": ["inspect"]} | settings)
        spec = upstream or fake_upstream.spec(script)
        backend = from_spec(spec, **({"max_retries": 0} if spec.startswith("openai:") else {}))
        backends.append(backend)
        n = len(servers)
        audit_location = audit or str(tmp_path / f"audit-{n}.db")
        store = KeyStore(keys_db or tmp_path / f"keys-{n}.db") if keys or keys_db else None
        if store is not None:
            stores.append(store)
        app = create_app(serve, eng, Responder(eng, backend),
                         AuditLog(audit_location, eng.policy.audit), store, shared=state)
        server = ServerThread(app).start()
        servers.append(server)
        return Proxy(url=server.url, audit_location=audit_location, keys=store, app=app)

    yield start
    for server in servers:
        server.stop()
    for backend in backends:
        backend.close()
    for store in stores:
        store.close()
