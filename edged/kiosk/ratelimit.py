"""Token buckets for rider presses: per screen, and one for all screens together.

A child leaning on a button, or a script on the LAN, must not fill the outbox with
requests: past the burst, presses are refused with a retry delay until tokens come back.
"""

import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucket:
    def __init__(self, burst: int, per_min: float, now: float) -> None:
        self.capacity = float(burst)
        self.rate = per_min / 60.0
        self.tokens = float(burst)
        self.updated = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now

    def wait_s(self, now: float) -> float:
        """0 when a token is there; else seconds until one is."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0


class RateLimiter:
    """A press costs one token from its screen's bucket and one from the global bucket."""

    def __init__(
        self,
        *,
        burst: int,
        per_min: float,
        global_burst: int,
        global_per_min: float,
        max_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.per_min = per_min
        self.clock = clock
        self.max_keys = max_keys
        self._global = TokenBucket(global_burst, global_per_min, clock())
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, key: str) -> float:
        """Take a token for `key`: 0.0 when allowed, else the seconds to wait (nothing taken)."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.burst, self.per_min, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:  # many addresses must not grow memory
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        wait = max(bucket.wait_s(now), self._global.wait_s(now))
        if wait > 0:
            return wait
        bucket.take()
        self._global.take()
        return 0.0
