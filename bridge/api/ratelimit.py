"""Token buckets per key (a brand, a client IP, a signer), in process memory."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimitedError(Exception):
    """A request beyond its rate limit (answered 429 with ``Retry-After``)."""

    def __init__(self, limit: str, retry_after: int) -> None:
        self.limit = limit
        self.retry_after = retry_after
        """Whole seconds, at least 1, until the bucket holds a token again."""
        super().__init__(f"{limit}; retry in {retry_after} s")


class RateLimiter:
    """``rate`` tokens per second per key, up to ``burst``; one request takes one token."""

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[int, _Bucket] = {}

    def acquire(self, key: int) -> float | None:
        """Takes a token for ``key``: ``None`` when granted, else the seconds until one is free."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self._burst, now)
            else:
                elapsed = max(0.0, now - bucket.updated)
                bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / self._rate

    def take(self, key: int, *, limit: str) -> None:
        """Takes a token for ``key``.

        Raises:
            RateLimitedError: when there is none; ``limit`` says in words which limit it is.
        """
        wait = self.acquire(key)
        if wait is not None:
            raise RateLimitedError(limit, max(1, math.ceil(wait)))
