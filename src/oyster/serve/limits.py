"""Rate limiting in this process: a token bucket per key (an API key, or a client address
for failed authentication), refilled continuously.

The limit is `rate_limit_per_minute` requests per minute with a burst of the same size.
These buckets live in one process: behind a load balancer with R replicas a key can make up
to R times the limit. `oyster serve --state redis://...` keeps the same buckets in Redis
instead, shared by every replica (`oyster.serve.state`).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic,
                 max_buckets: int = 10_000) -> None:
        self.capacity = float(per_minute)
        self.refill_per_s = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._max_buckets = max_buckets

    def acquire(self, key: str) -> float | None:
        """Take one token for `key`: None if allowed, else seconds until one is free."""
        now = self._clock()
        if len(self._buckets) >= self._max_buckets:
            self._forget_idle(now)
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.refill_per_s)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.refill_per_s

    def wait(self, key: str) -> float | None:
        """Seconds until `key` has a token again (None: it has one now); takes nothing."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.refill_per_s)
        return None if tokens >= 1.0 else (1.0 - tokens) / self.refill_per_s

    def _forget_idle(self, now: float) -> None:
        # a bucket that has refilled completely is the same as no bucket
        full_after = self.capacity / self.refill_per_s
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
