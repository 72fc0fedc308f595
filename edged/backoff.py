"""Jittered, capped exponential backoff: one rule for restarting drivers and reconnecting."""

import random


def jittered_backoff(failures: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait after the n-th consecutive failure: doubling from `initial_s`, capped at
    `max_s`, drawn from the upper half so a fleet does not retry in lockstep."""
    # the exponent capped: 2 ** 1024 is no float (a device missing for days), and 2.0 ** 1023
    # times any delay is past any cap (inf at worst, which min() takes care of)
    ceiling = min(max_s, initial_s * 2.0 ** min(max(0, failures - 1), 1023))
    return rng.uniform(ceiling / 2, ceiling)
