"""Jittered, capped exponential backoff: one rule for restarting drivers and reconnecting."""

import random


def jittered_backoff(failures: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait after the n-th consecutive failure: doubling from `initial_s`, capped at
    `max_s`, drawn from the upper half so a fleet does not retry in lockstep."""
    ceiling = min(max_s, initial_s * 2 ** max(0, failures - 1))
    return rng.uniform(ceiling / 2, ceiling)
