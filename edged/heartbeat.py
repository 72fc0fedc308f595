"""Which health report to send: the full one (`health`, retained) or a short beat.

A full report is 800–900 bytes of JSON and says much that rarely changes (driver states,
error counters, the MQTT session). It is sent on the first look after each connection, when
something in it changes beyond `[health]`'s thresholds (a driver's state or restarts, a new
kind of error counter, the link or the clock, the riders' hotspot losing or regaining
the internet, the access lists changing or expiring, the outbox's losses and its depth crossing
`depth_above`, CPU or loop lag crossing their limits, memory moving `rss_step_mb`), at
least every `full_every_s`, and on `republish`. Otherwise a `health/beat` every `beat_s`
carries what moves all the time. The retained `health` is always the last full report.
"""

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from edged.config.models import HealthConfig
from edged.payloads import Health, HealthBeat
from edged.topics import HEALTH, HEALTH_BEAT, TopicSpec


class HealthReporter:
    def __init__(self, config: HealthConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._shape: tuple[Any, ...] | None = None  # what the last full report said
        self._rss = 0.0
        self._full_at = 0.0
        self._beat_at = 0.0
        self._sessions = -1

    def _shape_of(self, h: Health) -> tuple[Any, ...]:
        c, o, m = self.config, h.outbox, h.mqtt
        return (
            tuple((d.name, d.state, d.restarts, d.last_error) for d in h.drivers),
            frozenset(h.errors),
            h.connected,
            h.clock,
            None if m is None else m.model_dump(),
            (
                o.thin_level,
                o.refused,
                o.refused_replies,
                o.dropped,
                o.write_errors,
                o.in_memory,
                o.read_errors,
            ),
            o.depth > c.depth_above,
            h.cpu_pct > c.cpu_above_pct,
            h.loop_lag_ms > c.lag_above_ms,
            None if h.wifi is None else h.wifi.internet,  # the hotspot's counts wait
            None if h.access is None else (h.access.version, h.access.expired),  # ages wait
        )

    def report(
        self, health: Health, sessions: int, *, full: bool = False
    ) -> tuple[TopicSpec, BaseModel] | None:
        """What to publish now (None: nothing this time)."""
        c, now = self.config, self.clock()
        shape = self._shape_of(health)
        full = (
            full
            or c.beat_s == 0
            or shape != self._shape
            or sessions != self._sessions
            or abs(health.rss_mb - self._rss) >= c.rss_step_mb
            or now - self._full_at >= c.full_every_s
        )
        if full:
            self._shape, self._rss, self._sessions = shape, health.rss_mb, sessions
            self._full_at = self._beat_at = now
            return HEALTH, health
        if now - self._beat_at < c.beat_s:
            return None
        self._beat_at = now
        return HEALTH_BEAT, HealthBeat(
            uptime_s=health.uptime_s,
            rss_mb=health.rss_mb,
            cpu_pct=health.cpu_pct,
            loop_lag_ms=health.loop_lag_ms,
            depth=health.outbox.depth,
            reconnects=health.reconnects,
        )
