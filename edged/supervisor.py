"""Run each driver under supervision: a crash restarts that driver alone, with backoff.

A bus operator cannot reboot a node on the road: an unplugged GPS must come back by itself
when it is plugged in again, and must not take the NFC reader down with it.
"""

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.base import Driver
from edged.backoff import jittered_backoff
from edged.config.models import SupervisorConfig
from edged.errors import ConfigError
from edged.payloads import DriverStatus

log = logging.getLogger(__name__)

Subscribe = Callable[[type, Callable[[Any], None]], Callable[[], None]]
"""The node's `subscribe`: register a handler for an event type, get its unsubscribe."""


@dataclass
class Supervised:
    name: str
    driver: str
    state: str = "starting"
    restarts: int = 0
    failures: int = 0  # consecutive, reset once the driver has been stable
    last_error: str | None = None
    since: float = field(default_factory=time.monotonic)

    def status(self) -> DriverStatus:
        return DriverStatus(
            name=self.name,
            driver=self.driver,
            state=self.state,
            restarts=self.restarts,
            last_error=self.last_error,
        )


class _Context:
    """The `DriverContext` handed to one running driver."""

    def __init__(
        self,
        sup: Supervised,
        emit: Callable[[Any], None],
        count: Callable[[str, int], None],
        subscribe: Subscribe,
    ) -> None:
        self.name = sup.name
        self._subscribe = subscribe
        self._unsubscribes: list[Callable[[], None]] = []
        self._count = count
        self.log = logging.getLogger(f"edged.driver.{sup.name}")
        self._sup = sup
        self._emit = emit
        self._loop = asyncio.get_running_loop()

    def emit(self, event: Any) -> None:
        self._emit(event)

    def emit_threadsafe(self, event: Any) -> None:
        self._loop.call_soon_threadsafe(self._emit, event)

    def count(self, key: str, n: int = 1) -> None:
        self._count(f"driver.{self.name}.{key}", n)

    def subscribe(self, event_type: type, handler: Callable[[Any], None]) -> None:
        self._unsubscribes.append(self._subscribe(event_type, handler))

    def close(self) -> None:
        """The driver stopped: its handlers must not be called any more."""
        for unsubscribe in self._unsubscribes:
            unsubscribe()
        self._unsubscribes.clear()

    def ready(self) -> None:
        if self._sup.state != "running":
            self._sup.state = "running"
            self._sup.since = time.monotonic()
            log.info("driver %s running", self._sup.name)


def _ignore(key: str, n: int) -> None:
    """No counters wired (unit tests)."""


def _no_subscribers(event_type: type, handler: Callable[[Any], None]) -> Callable[[], None]:
    """No event bus wired (unit tests): nothing will ever be delivered."""
    return lambda: None


def backoff_delay(failures: int, config: SupervisorConfig, rng: random.Random) -> float:
    """Exponential backoff, capped, with jitter so a fleet does not retry in lockstep."""
    return jittered_backoff(failures, config.backoff_initial_s, config.backoff_max_s, rng)


class Supervisor:
    def __init__(
        self,
        config: SupervisorConfig,
        emit: Callable[[Any], None],
        *,
        counters: "Callable[[str, int], None] | None" = None,
        subscribe: "Subscribe | None" = None,
        rng: random.Random | None = None,
    ) -> None:
        self.subscribe: Subscribe = subscribe or _no_subscribers
        self.config = config
        self.emit = emit
        self.count: Callable[[str, int], None] = counters or _ignore
        self.rng = rng or random.Random()
        self.drivers: dict[str, Supervised] = {}

    def statuses(self) -> list[DriverStatus]:
        return [s.status() for s in self.drivers.values()]

    async def supervise(self, name: str, kind: str, factory: Callable[[], Driver]) -> None:
        """Run one driver forever (until cancelled), restarting it after each failure."""
        sup = self.drivers.setdefault(name, Supervised(name, kind))
        while True:
            sup.state = "starting"
            started = time.monotonic()
            try:
                driver = factory()
                ctx = _Context(sup, self.emit, self.count, self.subscribe)
                try:
                    await driver.run(ctx)
                finally:
                    ctx.close()
                raise RuntimeError("driver returned; a driver runs until it is cancelled")
            except asyncio.CancelledError:
                sup.state = "stopped"
                raise
            except ConfigError as exc:
                sup.state, sup.last_error = "failed", str(exc)
                self.count(f"driver.{name}.failed", 1)
                log.error("driver %s cannot run with its config, not restarting: %s", name, exc)
                return
            except Exception as exc:  # a driver's failure must never reach the other drivers
                reason = f"{type(exc).__name__}: {exc}"
                if time.monotonic() - started >= self.config.stable_after_s:
                    sup.failures = 0
                sup.failures += 1
                sup.restarts += 1
                sup.last_error = reason
                sup.state = "backoff"
                self.count(f"driver.{name}.crash", 1)
                delay = backoff_delay(sup.failures, self.config, self.rng)
                log.warning("driver %s failed (%s); restarting in %.1f s", name, reason, delay)
                try:
                    await asyncio.sleep(delay)
                except asyncio.CancelledError:
                    sup.state = "stopped"
                    raise
