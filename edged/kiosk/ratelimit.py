"""Token buckets for rider presses: per screen, and one for all screens together.

A child leaning on a button, or a script on the LAN, must not fill the outbox with
requests: past the burst, presses are refused with a retry delay until tokens come back.
"""

import time
from collections import OrderedDict
from collections.abc import Callable

from core.ratelimit import TokenBucket


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
