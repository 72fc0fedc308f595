"""Run each driver under supervision: a crash restarts that driver alone, at once the first
time, then with backoff.

A bus operator cannot reboot a node on the road: an unplugged GPS must come back by itself
when it is plugged in again, and must not take the NFC reader down with it.
"""

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.bus import Bus
from core.counters import Counters
from core.driver import Driver, DriverContext
from core.errors import ConfigError
from core.logs import KEEP
from drivers.registry import driver_class
from edged.backoff import jittered_backoff
from edged.config.models import DriverConfig, SupervisorConfig
from edged.payloads import DriverStatus, clip_error

log = logging.getLogger(__name__)

APPEAR_POLL_S = 0.5
"""While a driver backs off with a device file of its missing (a USB serial adapter
unplugged: /dev/ttyUSB0, a /dev/serial/by-id/ link gone), how often the supervisor looks
for it: plugged back, the driver restarts within about this long (and as long again for
udev to give the node its group), not at the end of a backoff grown to a minute while it
was away, with riders tapping at a dead reader meanwhile."""


@dataclass
class Supervised:
    name: str
    driver: str
    state: str = "starting"
    restarts: int = 0
    failures: int = 0  # consecutive, reset once the driver has been stable
    last_error: str | None = None
    since: float = field(default_factory=time.monotonic)
    came_up: bool = True
    """Whether its last start before this one came to run (True before any failure): a start
    after one that never ran retries a device that is missing, a driver that ran is coming
    back (`state_at_switch`)."""

    def state_at_switch(self) -> str:
        """The state a switch notes for the trial (`Trial.drivers_before`): a start retrying a
        device that did not come up is `backoff`, as between those retries (a reader
        unplugged, a GPS silent for `silence_s`); a start of a driver that ran, or its first
        one, is `starting`, which the trial waits for."""
        return "backoff" if self.state == "starting" and not self.came_up else self.state

    def ready(self) -> None:
        """The driver said its device answers."""
        if self.state != "running":
            self.state = "running"
            self.since = time.monotonic()
            log.info("driver %s running", self.name, extra=KEEP)

    def status(self) -> DriverStatus:
        return DriverStatus(
            name=self.name,
            driver=self.driver,
            state=self.state,
            restarts=self.restarts,
            last_error=self.last_error,
        )


def driver_factory(d: DriverConfig) -> Callable[[], Driver]:
    """Each start builds the driver afresh, from its options as validated at load."""
    cls = driver_class(d.driver)
    options = d.settings

    def make() -> Driver:
        driver: Driver = cls(options)
        return driver

    return make


def watched(d: DriverConfig) -> tuple[tuple[str, ...], str]:
    """What tells that `d`'s device is back while it backs off (`Driver.opens`): the device
    files it opens, and where its node appears when plugged in (a USB reader)."""
    try:
        opens = driver_class(d.driver).opens(d.settings)
    except Exception:  # what the doctor reports; never a reason not to run the driver
        return (), ""
    return tuple(dev.path for dev in opens.devices if dev.path.startswith("/")), opens.plugged_in


def backoff_delay(failures: int, config: SupervisorConfig, rng: random.Random) -> float:
    """Exponential backoff, capped, with jitter so a fleet does not retry in lockstep."""
    return jittered_backoff(failures, config.backoff_initial_s, config.backoff_max_s, rng)


def restart_delay(failures: int, config: SupervisorConfig, rng: random.Random) -> float:
    """Seconds before the next start after the `failures`-th failure in a row.

    The first failure in a row (the driver's first, or the first after it ran
    `stable_after_s`) restarts at once: while a driver is down its inputs are blind (a panic
    button pressed then is lost, measured 0.5-1 s with a backoff from the start), and a
    device that worked a moment ago is usually there still. A failure again right after
    that backs off as before, one start later (`backoff_delay(failures - 1)`), so a driver
    failing for good retries at the same pace, and at most one start in `stable_after_s`
    is immediate.
    """
    if failures <= 1:
        return 0.0
    return backoff_delay(failures - 1, config, rng)


class Supervisor:
    def __init__(
        self,
        config: SupervisorConfig,
        bus: Bus,
        counters: Counters,
        *,
        rng: random.Random | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.bus = bus
        self.state_dir = state_dir
        self.counters = counters
        self.rng = rng or random.Random()
        self.drivers: dict[str, Supervised] = {}

    def statuses(self) -> list[DriverStatus]:
        return [s.status() for s in self.drivers.values()]

    def states_at_switch(self) -> dict[str, str]:
        """What a switch to another release notes for its trial (`Supervised.state_at_switch`)."""
        return {s.name: s.state_at_switch() for s in self.drivers.values()}

    async def run(self, d: DriverConfig) -> None:
        """Run a configured driver forever (until cancelled)."""
        files, plugged_in = watched(d)
        await self.supervise(
            d.name, d.driver, driver_factory(d), files=files, plugged_in=plugged_in
        )

    async def supervise(
        self,
        name: str,
        kind: str,
        factory: Callable[[], Driver],
        *,
        files: tuple[str, ...] = (),
        plugged_in: str = "",
    ) -> None:
        """Run one driver forever (until cancelled), restarting it after each failure, or
        as soon as a device file of `files` missing when it failed is back, or a device
        node appears in the directory `plugged_in` (a USB device plugged in)."""
        sup = self.drivers.setdefault(name, Supervised(name, kind))
        watch = True  # no early restart since the last backoff waited in full
        while True:
            sup.state = "starting"
            started = time.monotonic()
            try:
                driver = factory()
                ctx = DriverContext(
                    name, self.bus, self.counters, on_ready=sup.ready, state_dir=self.state_dir
                )
                try:
                    await driver.run(ctx)
                finally:
                    ctx.close()
                raise RuntimeError("driver returned; a driver runs until it is cancelled")
            except asyncio.CancelledError:
                sup.state = "stopped"
                raise
            except ConfigError as exc:
                sup.state, sup.last_error = "failed", clip_error(str(exc))
                self.counters.inc(f"driver.{name}.failed")
                log.error(
                    "driver %s cannot run with its config, not restarting: %s",
                    name,
                    exc,
                    extra=KEEP,
                )
                return
            except Exception as exc:  # a driver's failure must never reach the other drivers
                reason = clip_error(f"{type(exc).__name__}: {exc}")
                sup.came_up = sup.state == "running"
                if time.monotonic() - started >= self.config.stable_after_s:
                    sup.failures = 0
                    watch = True
                sup.failures += 1
                sup.restarts += 1
                sup.last_error = reason
                sup.state = "backoff"
                self.counters.inc(f"driver.{name}.crash")
                delay = restart_delay(sup.failures, self.config, self.rng)
                log.warning(
                    "driver %s failed (%s); restarting in %.1f s", name, reason, delay, extra=KEEP
                )
                try:
                    # a device that comes back restarts its driver early once; failing
                    # again, the next backoff is waited in full: a device in a reset loop
                    # (a Pi short of power, a flaky hub; another USB device re-enumerating
                    # again and again) is no restart at each return
                    missing = [f for f in files if not _exists(f)] if watch else []
                    watch = not await self._back_off(
                        name, delay, missing, plugged_in if watch else ""
                    )
                except asyncio.CancelledError:
                    sup.state = "stopped"
                    raise

    async def _back_off(
        self, name: str, delay: float, missing: list[str], plugged_in: str = ""
    ) -> bool:
        """Sleep `delay`, or until a file of `missing` exists again or a node appears in
        `plugged_in` (then a moment more: udev gives a new device node its group and mode
        just after it appears). Whether it ended early."""
        if not missing and not plugged_in:
            await asyncio.sleep(delay)
            return False
        nodes = _nodes(plugged_in)
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(APPEAR_POLL_S, left))
            back = next((f for f in missing if _exists(f)), None)
            if back is None and plugged_in:
                now = _nodes(plugged_in)
                back = next(iter(sorted(now - nodes)), None)
                nodes = now  # one gone is no reason; one that comes is
            if back is not None:
                log.info("driver %s: %s is back, restarting it now", name, back, extra=KEEP)
                await asyncio.sleep(min(APPEAR_POLL_S, max(0.0, end - time.monotonic())))
                return True
        return False


def _exists(path: str) -> bool:
    """A stat of a device file under /dev, on the loop (a few µs, not a disk's wait): kept
    out of the coroutines, where ruff's ASYNC240 would take it for blocking file I/O."""
    return os.path.exists(path)


def _nodes(directory: str) -> set[str]:
    """The device nodes under `directory` and one level of directories below it (USB:
    /dev/bus/usb/001/004): a few dozen names, read every `APPEAR_POLL_S` while backing off."""
    if not directory:
        return set()
    found: set[str] = set()
    try:
        with os.scandir(directory) as top:
            for entry in top:
                found.add(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(OSError), os.scandir(entry.path) as inner:
                        found.update(e.path for e in inner)
    except OSError:
        pass
    return found
