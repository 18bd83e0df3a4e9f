"""Replicas sharing one PostgreSQL (keys, audit) and one Redis (rate limits, revocations),
over real HTTP, and what a replica does when Redis goes away."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from oyster.serve.audit import count
from oyster.serve.keys import KeyStore
from oyster.serve.localservices import LocalRedis
from oyster.serve.state import LocalState, RedisState, publish_revocation
from oyster.serve.testing import free_port

USER = [{"role": "user", "content": "What is a good name for a cat?"}]


def _decide(url: str, key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/decide", json={"messages": USER}, headers=headers, timeout=10)


@pytest.mark.parametrize("shared", ["redis", "local"])
def test_a_rate_limit_holds_across_replicas_only_with_redis(start_proxy, pg_url, redis_url,
                                                            shared):
    limit = 20
    store = KeyStore(pg_url)
    key = store.add("team", ["inspect"]).key  # /v1/decide needs the inspect scope
    store.close()
    replicas = [start_proxy(audit=pg_url, keys_db=pg_url, rate_limit_per_minute=limit,
                            state=(RedisState(redis_url, limit, "closed") if shared == "redis"
                                   else LocalState(limit)))
                for _ in range(2)]
    started = time.monotonic()
    statuses = [_decide(replicas[i % 2].url, key).status_code for i in range(2 * limit)]
    refilled = (time.monotonic() - started) * limit / 60
    allowed = statuses.count(200)
    if shared == "redis":  # one bucket for both: the limit, plus what refilled meanwhile
        assert limit <= allowed <= limit + refilled + 1, statuses
    else:  # a bucket each: twice the limit
        assert allowed == 2 * limit
    assert statuses.count(429) == 2 * limit - allowed
    assert count(pg_url) == 2 * limit  # the 429s included


def test_a_revocation_reaches_replicas_that_cached_the_key(start_proxy, pg_url, redis_url):
    store = KeyStore(pg_url)
    key = store.add("team", ["inspect"]).key  # /v1/decide needs the inspect scope
    proxy = start_proxy(keys_db=pg_url,
                        state=RedisState(redis_url, 600, "closed", key_cache_s=600))
    assert _decide(proxy.url, key).status_code == 200
    store.revoke("team")  # the key database alone: this replica trusts its cache a while
    assert _decide(proxy.url, key).status_code == 200
    publish_revocation(redis_url, "team")  # what `keys revoke --state` does
    r = _decide(proxy.url, key)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    store.close()


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
def test_an_unreachable_redis_follows_the_fail_mode(start_proxy, fail_mode):
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    proxy = start_proxy(fail_mode=fail_mode, rate_limit_per_minute=2,
                        state=RedisState(nowhere, 2, fail_mode, timeout_s=0.2))
    health = httpx.get(f"{proxy.url}/healthz").json()["state"]
    assert health["ok"] is False and health["error"]
    ready = httpx.get(f"{proxy.url}/readyz")
    statuses = [_decide(proxy.url).status_code for _ in range(3)]
    if fail_mode == "closed":
        assert ready.status_code == 503 and "state" in ready.json()["problems"]
        assert statuses == [503, 503, 503] and "refused" in health["mode"]
    else:  # served, with this replica's own bucket
        assert ready.status_code == 200
        assert statuses == [200, 200, 429] and "per-replica" in health["mode"]
    rows = proxy.audit_rows()
    assert sorted(r.status for r in rows) == sorted(statuses)


def test_a_replica_recovers_when_redis_comes_back(start_proxy, tmp_path):
    if not LocalRedis.available():  # CI installs it: there a missing server is a failure
        required = os.environ.get("OYSTER_REQUIRE_SERVICES") or os.environ.get("CI")
        (pytest.fail if required else pytest.skip)("redis-server is not installed")
    redis = LocalRedis(tmp_path / "redis").start()
    proxy = start_proxy(state=RedisState(redis.url, 600, "closed", timeout_s=0.2,
                                         probe_every_s=0.2))
    try:
        assert _decide(proxy.url).status_code == 200
        redis.stop()
        assert _decide(proxy.url).status_code == 503
        redis.start()
        deadline = time.monotonic() + 15
        while _decide(proxy.url).status_code != 200:
            assert time.monotonic() < deadline, "the replica never used Redis again"
            time.sleep(0.2)
        assert httpx.get(f"{proxy.url}/healthz").json()["state"]["ok"] is True
    finally:
        redis.stop()


def test_readiness_reasons_are_for_admin_keys_only(start_proxy):
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    proxy = start_proxy(keys=True, state=RedisState(nowhere, 60, "closed", timeout_s=0.2))
    admin = proxy.keys.add("ops", ["admin"]).key
    anyone = httpx.get(f"{proxy.url}/readyz")  # a load balancer's probe, no key
    assert anyone.status_code == 503
    assert anyone.json() == {"ready": False, "problems": {"state": "not answering"}}
    detailed = httpx.get(f"{proxy.url}/readyz", headers={"authorization": f"Bearer {admin}"})
    assert detailed.status_code == 503 and "127.0.0.1" in detailed.json()["problems"]["state"]
