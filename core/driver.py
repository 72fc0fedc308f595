"""The contract between a driver and the node that runs it, and the one context it runs in.

A driver is a class with an `Options` model (validated once, when the config is loaded), a
`run(ctx)` that runs until cancelled, and an `opens(options)` that says what it will open,
so `edged doctor` can check the device before running the driver (python-can's
`_detect_available_configs` is the model: the backend knows its own hardware).

`DriverContext` is the only implementation of what a running driver may use: the
supervisor, the doctor's probe, the benchmarks and the tests all run drivers in it, on a
real `Bus`.
"""

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import ConfigDict

from core.bus import Bus
from core.confignumbers import NumbersNotBools
from core.counters import Counters


class DriverOptions(NumbersNotBools):
    """Base of every driver's options: unknown keys are errors, as in the rest of the config."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


DeviceKind = Literal["serial", "gpio", "i2c", "spi", "netif"]


@dataclass(frozen=True)
class Device:
    """A device node (or a CAN network interface) a driver opens."""

    path: str
    kind: DeviceKind
    key: str
    """The option it comes from, named in the doctor's advice."""
    bring_up: str = ""
    """For a network interface: the command that brings it up as the driver wants it."""

    @classmethod
    def at(cls, path: str, key: str) -> "Device":
        """A device file, its kind told by its name (/dev/i2c-1, /dev/spidev0.0...)."""
        base = os.path.basename(path)
        kind: DeviceKind = "serial"
        if base.startswith(("gpiochip", "gpiomem")):
            kind = "gpio"
        elif base.startswith("i2c-"):
            kind = "i2c"
        elif base.startswith("spidev"):
            kind = "spi"
        return cls(path, kind, key)


@dataclass(frozen=True)
class Opens:
    """What a driver opens, from its options: what `edged doctor` checks before running it."""

    devices: tuple[Device, ...] = ()
    simulated: str = ""
    """A simulated backend (what it simulates): nothing to check but that it runs."""
    gpio_chips: str = ""
    """A gpiozero pin factory that needs the kernel's GPIO character devices."""
    silence: str = ""
    """What to check when the device opens but the driver never says it is ready."""
    plugged_in: str = ""
    """A directory where the device's node appears when it is plugged in, for a device no
    option names (a USB reader libnfc finds by itself: /dev/bus/usb): the supervisor,
    backing off after a failure, restarts the driver when a node appears there."""


@dataclass(frozen=True, slots=True)
class DriverReady:
    """On the bus when a driver's device answers, once per start (its first `ready`).

    A started or restarted driver begins from its safe state (lights off, relay
    de-energised) and knows nothing of what the services showed before: a service that
    keeps a lasting output (the panic alarm's red light and buzzer) shows it again on this.
    Not retained: it says something happened, not how things are.
    """

    driver: str  # the driver instance name, e.g. "gpio"
    ts: float  # time.monotonic()


class DriverContext:
    """What a running driver may do: hand events to the bus, receive some, count, say ready.

    Events go to the node's `Bus` (`emit` on the loop thread, `emit_threadsafe` from a
    library's thread); counters are `driver.{name}.{key}` in `health`; `subscribe`d
    handlers (a relay listening for `Unlock`) are dropped by `close`, so a restarted
    driver leaves none behind. The first `ready` of a context puts `DriverReady` on the
    bus (a context is one start of a driver).
    """

    def __init__(
        self,
        name: str,
        bus: Bus,
        counters: Counters,
        *,
        on_ready: Callable[[], None] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.bus = bus
        self.counters = counters
        self.state_dir = state_dir
        """The node's own directory (beside its outbox), where a driver may keep what it
        learned about the machine across starts; None: nowhere (the doctor, a test)."""
        self.log = logging.getLogger(f"edged.driver.{name}")
        self.emitted = 0
        """Events handed to the bus so far (the doctor reports it)."""
        self._prefix = f"driver.{name}."
        self._on_ready = on_ready
        self._announced = False
        self._unsubscribes: list[Callable[[], None]] = []
        bus.bind()

    def emit(self, event: Any) -> None:
        """Hand an event to the services; call from the event loop thread only."""
        self.emitted += 1
        self.bus.emit(event)

    def emit_threadsafe(self, event: Any) -> None:
        """Hand an event over from a library's own thread (gpiozero, python-can notifier)."""
        self.emitted += 1
        self.bus.emit_threadsafe(event)

    def count(self, key: str, n: int = 1) -> None:
        """Bump the health counter `driver.{name}.{key}` (bad checksum, bus error…)."""
        self.counters.inc(self._prefix + key, n)

    def subscribe(self, event_type: type, handler: Callable[[Any], None]) -> None:
        """Receive events from the services (e.g. `Unlock`, `Feedback` for outputs), on the
        event loop thread, until the driver stops."""
        self._unsubscribes.append(self.bus.subscribe(event_type, handler))

    def ready(self) -> None:
        """The device answers: the supervisor shows the driver as `running`, and the first
        time in this start the services hear it (`DriverReady`). Call from the loop thread."""
        if self._on_ready is not None:
            self._on_ready()
        if not self._announced:
            self._announced = True
            self.bus.emit(DriverReady(self.name, time.monotonic()))

    def close(self) -> None:
        """The driver stopped: its handlers must not be called any more."""
        for unsubscribe in self._unsubscribes:
            unsubscribe()
        self._unsubscribes.clear()


@runtime_checkable
class Driver(Protocol):
    """A driver runs until cancelled; raising means it failed and will be restarted."""

    Options: ClassVar[type[DriverOptions]]

    @classmethod
    def opens(cls, options: Any) -> Opens:
        """What the driver will open with these options (for `edged doctor`)."""
        ...

    async def run(self, ctx: DriverContext) -> None: ...
