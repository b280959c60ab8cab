"""Per-key request rates: a token bucket per key name, in this process."""

from __future__ import annotations

import threading
import time

from modelport.errors import RateLimited


class RateLimiter:
    """``rate`` requests per second with bursts of up to ``rate`` (at least one) requests.

    Buckets live in the process: with ``--workers N`` a key may reach N times its rate in total.
    """

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key name -> (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, key: str, rate: float | None) -> None:
        if rate is None:
            return
        capacity = max(rate, 1.0)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                raise RateLimited(
                    f"key {key!r} is over its limit of {rate:g} requests/s", (1.0 - tokens) / rate
                )
            self._buckets[key] = (tokens - 1.0, now)
