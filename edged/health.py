"""What the node says about itself: `state` at birth, and `health`, what ops needs to tell
a healthy node from a sick one, every 30 s."""

import asyncio
import os
import resource
import time
from collections.abc import Callable, Mapping

from pydantic import BaseModel

from edged import __version__
from edged.config.models import EdgedConfig
from edged.payloads import DriverStatus, Health, MqttHealth, OutboxHealth, State

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def birth(config: EdgedConfig, config_hash: str, since: int) -> State:
    """The retained `state` of a node that has just connected."""
    return State(
        state="online",
        version=__version__,
        profile=config.node.profile.value,
        name=config.node.name or None,
        config_hash=config_hash,
        drivers=[f"{d.name}:{d.driver}" for d in config.drivers if d.enabled],
        encoding=config.broker.encoding,
        since=since,
    )


def rss_mb() -> float:
    """Resident set size now (not the peak), from /proc."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE / 1e6
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000


class LoopLag:
    """Worst lateness of a periodic wake-up: a blocked loop delays taps and door openings."""

    def __init__(self, period: float = 0.25) -> None:
        self.period = period
        self.worst = 0.0
        self.last_beat = time.monotonic()

    async def run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(self.period)
            self.last_beat = time.monotonic()
            self.worst = max(self.worst, self.last_beat - start - self.period)

    def take(self) -> float:
        worst, self.worst = self.worst, 0.0
        return worst


class CpuMeter:
    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = self._used()

    @staticmethod
    def _used() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def take(self) -> float:
        """CPU % of one core since the last call."""
        wall, cpu = time.monotonic(), self._used()
        pct = 100 * (cpu - self._cpu) / max(1e-6, wall - self._wall)
        self._wall, self._cpu = wall, cpu
        return round(pct, 1)


def build_health(
    *,
    started: float,
    lag: LoopLag,
    cpu: CpuMeter,
    clock: str,
    connected: bool,
    reconnects: int,
    outbox: OutboxHealth,
    drivers: list[DriverStatus],
    errors: dict[str, int],
    mqtt: MqttHealth | None = None,
    parts: Mapping[str, BaseModel] | None = None,
) -> Health:
    """`parts`: what services add (`Service.report`), each a field of `Health`."""
    health = Health(
        uptime_s=round(time.monotonic() - started, 1),
        rss_mb=round(rss_mb(), 1),
        cpu_pct=cpu.take(),
        loop_lag_ms=round(lag.take() * 1000, 1),
        clock=clock,
        connected=connected,
        reconnects=reconnects,
        outbox=outbox,
        drivers=drivers,
        errors=errors,
        mqtt=mqtt,
    )
    unknown = set(parts or {}) - set(Health.model_fields)
    if unknown:
        raise ValueError(f"health has no field {sorted(unknown)}: add it to Health first")
    return health.model_copy(update=dict(parts or {}))


async def every(interval: float, fn: Callable[[], object]) -> None:
    """Call `fn` (sync or async) every `interval` seconds, first after one interval."""
    while True:
        await asyncio.sleep(interval)
        result = fn()
        if asyncio.iscoroutine(result):
            await result
