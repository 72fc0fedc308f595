"""The system clock: synchronised, or stamped from GPS (or `unsynced`) until it is.

A Pi has no battery-backed clock: after a cold boot without network its time can be far
off, which also makes TLS certificates look expired or not yet valid.
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime

from edged import clock
from edged.clock import ENABLE_NTP
from edged.config.security import ClockConfig
from edged.doctor.check import Check, ok, warn

SECTION = "clock"
EARLIEST_PLAUSIBLE = datetime(2025, 1, 1, tzinfo=UTC)


def check_clock(
    config: ClockConfig,
    has_gps: bool,
    synced: Callable[[], bool | None] = clock.kernel_clock_synced,
) -> Check:
    """Whether payloads will be stamped `ntp`, `gps` or `unsynced`, and how to fix it."""
    now = datetime.fromtimestamp(time.time(), UTC)
    shown = f"{now:%Y-%m-%d %H:%M} UTC"
    state = synced()
    if state:
        return ok(SECTION, "clock", f"synchronised by the kernel (NTP): {shown}")
    fallback = (
        "; until then payloads carry GPS time once the receiver has a fix"
        if has_gps
        else "; no GPS driver is configured, so payloads are stamped `unsynced` until then"
    )
    if now < EARLIEST_PLAUSIBLE:
        return warn(
            SECTION,
            "clock",
            f"not synchronised, and it says {shown}: TLS certificates will look not yet valid",
            ENABLE_NTP + fallback,
        )
    if config.trust_system_clock:
        return ok(
            SECTION,
            "clock",
            f"the kernel says not synchronised, but trust_system_clock is set: {shown}",
        )
    if state is None:
        return warn(
            SECTION,
            "clock",
            f"cannot ask the kernel whether the clock is synchronised: {shown}",
            "if an NTP daemon keeps this clock right, set [clock] trust_system_clock = true"
            + fallback,
        )
    return warn(
        SECTION,
        "clock",
        f"the kernel says it is not synchronised (no NTP daemon disciplines it): {shown}",
        ENABLE_NTP + fallback,
    )
