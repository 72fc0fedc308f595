"""Token buckets: a burst per screen, then a steady rate; a global cap over all screens."""

from edged.kiosk.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def limiter(clock: Clock, **kw: float) -> RateLimiter:
    args = {"burst": 3, "per_min": 6.0, "global_burst": 10, "global_per_min": 30.0, **kw}
    return RateLimiter(clock=clock, **args)  # type: ignore[arg-type]


def test_a_burst_passes_then_the_next_press_waits_for_a_token() -> None:
    clock = Clock()
    lim = limiter(clock)
    assert [lim.check("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lim.check("a") == 10.0  # 6 per minute: one token every 10 s


def test_tokens_come_back_at_the_configured_rate() -> None:
    clock = Clock()
    lim = limiter(clock)
    for _ in range(3):
        lim.check("a")
    clock.t = 10.0
    assert lim.check("a") == 0.0
    assert lim.check("a") > 0


def test_a_refused_press_takes_no_token() -> None:
    clock = Clock()
    lim = limiter(clock)
    for _ in range(3):
        lim.check("a")
    for _ in range(50):
        lim.check("a")
    clock.t = 10.0
    assert lim.check("a") == 0.0


def test_one_screen_flooding_does_not_stop_another() -> None:
    clock = Clock()
    lim = limiter(clock)
    for _ in range(20):
        lim.check("a")
    assert lim.check("b") == 0.0


def test_the_global_cap_holds_over_many_screens() -> None:
    clock = Clock()
    lim = limiter(clock, global_burst=5)
    allowed = sum(lim.check(f"screen-{i}") == 0.0 for i in range(50))
    assert allowed == 5


def test_many_addresses_do_not_grow_memory_without_bound() -> None:
    clock = Clock()
    lim = RateLimiter(
        burst=1, per_min=1, global_burst=10**6, global_per_min=10**6, max_keys=10, clock=clock
    )
    for i in range(1000):
        lim.check(f"10.0.{i // 256}.{i % 256}")
    assert len(lim._buckets) == 10
