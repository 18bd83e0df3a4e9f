"""State the proxy's replicas must agree on: rate limits, key revocations, the key cache.

Without `--state`, `LocalState` keeps today's behaviour: one token bucket per key in this
process (R replicas allow up to R times the limit) and a database lookup per request.

With `--state redis://HOST:PORT/DB` (optionally `?prefix=NAME:` to share one Redis between
deployments), `RedisState`:
- rate-limits with one token bucket per key *in Redis*, updated atomically by a Lua script
  on Redis's own clock, so N replicas together allow the configured limit, not N times it;
- caches successful key lookups for `key_cache_s` per replica (a database query saved per
  request) and checks, in the same script call, the set of revoked key names that
  `oyster serve keys revoke --state ...` adds to: a revocation reaches every replica on its
  next request, whatever its cache holds. A revocation made without `--state` reaches them
  once their cache entry expires.

If Redis cannot be reached, the policy's fail mode decides: `closed` refuses requests with
503 (`state_unavailable`; `/readyz` fails, so a load balancer can drain the replica), `open`
serves them with this replica's own bucket. A refused connection marks Redis down at once;
timeouts (a busy Redis, or a busy replica) only after `DOWN_AFTER_TIMEOUTS` in a row, the
request that timed out meeting the fail mode alone. `/healthz` says which mode is in force,
and since when; a probe retries Redis every second until it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel

from oyster.errors import InputError, OysterError
from oyster.serve.keys import KeyIdentity, KeyStore, hash_key
from oyster.serve.limits import RateLimiter
from oyster.serve.storage import redact

log = logging.getLogger("oyster.serve")

FailMode = Literal["closed", "open"]
DEFAULT_PREFIX = "oyster:"
DOWN_AFTER_TIMEOUTS = 3
_KEY_CACHE_MAX = 10_000

# KEYS: bucket hash, revoked-names set. ARGV: capacity, tokens per ms, key name or "".
# Returns -1 for a revoked key, else 0 (allowed) or the milliseconds until a token is free.
_TOKEN_BUCKET = """
if ARGV[3] ~= '' and redis.call('SISMEMBER', KEYS[2], ARGV[3]) == 1 then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then tokens = capacity; ts = now end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate) end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate) + 1000)
return wait
"""


class StateUnavailable(OysterError):
    """Shared state is unreachable and the fail mode is closed."""


@dataclass(frozen=True)
class Admission:
    """The rate limiter's answer: `wait_s` None when allowed; `revoked` for a key that was
    revoked after this replica cached it."""

    wait_s: float | None
    revoked: bool = False


class StateHealth(BaseModel):
    backend: str
    ok: bool
    mode: str
    error: str | None = None
    down_since: float | None = None


class SharedState:
    """Rate limiting and key checks for one app; see the module docstring."""

    backend: str = "in-process"

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def verify_key(self, keys: KeyStore, token: str) -> KeyIdentity | None:
        return await keys.averify(token)

    async def admit(self, bucket: str, key_name: str | None) -> Admission:
        raise NotImplementedError

    def health(self) -> StateHealth:
        raise NotImplementedError


class LocalState(SharedState):
    """This process only: today's behaviour."""

    def __init__(self, per_minute: int) -> None:
        self.limiter = RateLimiter(per_minute)

    async def admit(self, bucket: str, key_name: str | None) -> Admission:
        return Admission(self.limiter.acquire(bucket))

    def health(self) -> StateHealth:
        return StateHealth(backend=self.backend, ok=True,
                           mode="per-replica rate limits, key lookups per request")


def split_redis_url(url: str) -> tuple[str, str]:
    """(the URL for the Redis client, our key prefix from `?prefix=`)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise InputError(f"--state {redact(url)}: give a redis:// (or rediss://) URL")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), DEFAULT_PREFIX)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


class RedisState(SharedState):
    def __init__(self, url: str, per_minute: int, fail_mode: FailMode,
                 key_cache_s: float = 30.0, timeout_s: float = 2.0,
                 probe_every_s: float = 1.0) -> None:
        self.url, self.prefix = split_redis_url(url)
        self.backend = redact(url)
        self.per_minute = per_minute
        self.fail_mode = fail_mode
        self.key_cache_s = key_cache_s
        self.timeout_s = timeout_s
        self.probe_every_s = probe_every_s
        self._fallback = RateLimiter(per_minute)
        self._cache: dict[str, tuple[KeyIdentity, float]] = {}
        self._client: Any = None
        self._script: Any = None
        self._probe: asyncio.Task[None] | None = None
        self._error: str | None = None
        self._down_since: float | None = None
        self._timeouts = 0  # in a row

    @property
    def revoked_key(self) -> str:
        return f"{self.prefix}keys:revoked"

    async def start(self) -> None:
        """Connect; an unreachable Redis is not fatal (the fail mode applies until it
        answers), so replicas may start before it."""
        import redis.asyncio as aredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # no retries inside the client: a failed call is reported, the probe reconnects
        self._client = aredis.Redis.from_url(
            self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s,
            retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self._script = self._client.register_script(_TOKEN_BUCKET)
        try:
            await self._client.ping()
        except Exception as e:
            self._went_down(e)
        self._probe = asyncio.create_task(self._watch(), name="oyster-state-probe")

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def up(self) -> bool:
        return self._down_since is None

    def _failed(self, e: BaseException) -> None:
        """A call failed: Redis is down if it refused, or after several timeouts in a row."""
        from redis.exceptions import TimeoutError as RedisTimeout

        self._error = f"{type(e).__name__}: {e}"
        if isinstance(e, RedisTimeout | TimeoutError):
            self._timeouts += 1
            if self._timeouts < DOWN_AFTER_TIMEOUTS:
                return
        self._went_down(e)

    def _went_down(self, e: BaseException) -> None:
        self._error = f"{type(e).__name__}: {e}"
        if self._down_since is None:
            self._down_since = time.time()
            log.error("shared state %s unreachable (%s); fail mode %s: %s", self.backend,
                      self._error, self.fail_mode,
                      "refusing requests" if self.fail_mode == "closed"
                      else "per-replica rate limits")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.probe_every_s if not self.up else 5 * self.probe_every_s)
            try:
                await self._client.ping()
            except Exception as e:
                self._went_down(e)
                continue
            self._timeouts = 0
            if not self.up:
                log.warning("shared state %s answers again after %.1fs", self.backend,
                            time.time() - (self._down_since or time.time()))
                self._down_since = self._error = None

    async def verify_key(self, keys: KeyStore, token: str) -> KeyIdentity | None:
        digest = hash_key(token)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        identity = await keys.averify(token)
        if identity is not None:
            if len(self._cache) >= _KEY_CACHE_MAX:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
                if len(self._cache) >= _KEY_CACHE_MAX:
                    self._cache.clear()
            self._cache[digest] = (identity, now + self.key_cache_s)
        return identity

    async def admit(self, bucket: str, key_name: str | None) -> Admission:
        if self.up:
            try:
                wait_ms = await self._script(
                    keys=[self._bucket_key(bucket), self.revoked_key],
                    args=[self.per_minute, self.per_minute / 60_000.0, key_name or ""])
            except Exception as e:  # connection refused, timeout, a Redis error
                self._failed(e)
            else:
                self._timeouts = 0
                if wait_ms < 0:
                    self._forget(key_name)
                    return Admission(None, revoked=True)
                return Admission(wait_ms / 1000.0 if wait_ms > 0 else None)
        if self.fail_mode == "closed":
            raise StateUnavailable(f"shared state {self.backend} is unreachable: {self._error}")
        return Admission(self._fallback.acquire(bucket))

    def _bucket_key(self, bucket: str) -> str:
        # hashed: bucket names hold key names and client addresses
        return f"{self.prefix}rl:{hashlib.sha256(bucket.encode()).hexdigest()[:32]}"

    def _forget(self, key_name: str | None) -> None:
        self._cache = {k: v for k, v in self._cache.items() if v[0].name != key_name}

    def health(self) -> StateHealth:
        if self.up:
            return StateHealth(backend=self.backend, ok=True,
                               mode="shared rate limits and key revocations")
        mode = ("fail closed: requests refused with 503" if self.fail_mode == "closed"
                else "fail open: per-replica rate limits")
        return StateHealth(backend=self.backend, ok=False, mode=mode, error=self._error,
                           down_since=self._down_since)


def from_url(url: str | None, per_minute: int, fail_mode: FailMode,
             key_cache_s: float = 30.0) -> SharedState:
    """`LocalState` for None, else `RedisState` (checks the URL, does not connect)."""
    if url is None:
        return LocalState(per_minute)
    try:
        import redis  # noqa: F401
    except ImportError as e:
        raise InputError("--state redis:// needs the redis package (pip install "
                         "'oyster-csa[redis]')") from e
    return RedisState(url, per_minute, fail_mode, key_cache_s)


def publish_revocation(url: str, name: str) -> None:
    """Tell every replica sharing the Redis at `url` that key `name` is revoked."""
    import redis

    client_url, prefix = split_redis_url(url)
    try:
        with redis.Redis.from_url(client_url, socket_timeout=5,
                                  socket_connect_timeout=5) as client:
            client.sadd(f"{prefix}keys:revoked", name)
    except redis.RedisError as e:
        raise OysterError(f"{redact(url)}: cannot record the revocation: {e}") from None
