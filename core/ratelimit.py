"""A token bucket: a burst, then a steady rate; what the node allows faster than people act.

Rider presses (edged.kiosk.ratelimit), the hotspot's DNS answers (edged.wifi.dns), cards a
reader does not know (edged.services.access) and `vehicle/faults` (edged.services.vehicle)
each take from one.
"""


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
