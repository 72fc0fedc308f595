"""`gpio.gpiozero`: door contacts, counting beams, panic button, ignition sense, the lock
relay, LEDs and buzzer of one node, on the Pi's GPIO header through gpiozero.

Inputs: gpiozero calls `pin.when_changed` in its own thread (lgpio's alert thread, RPi.GPIO's
edge thread; the caller's thread for MockFactory). That callback only takes
`time.monotonic()` and hops to the event loop (`call_soon_threadsafe`); everything else —
debouncing, the panic hold, the beam direction machine — runs on the loop, which owns
their timers and their state, so there are no locks. Events go out with `ctx.emit` from
there. One hop per edge costs tens of µs; doors and beams make a few edges a second.

Debouncing is done here, not with gpiozero's `bounce_time`: its meaning depends on the pin
factory (lgpio: the level must be stable that long; RPi.GPIO: edges are ignored that long
after one, which can lose the final level; MockFactory: not implemented), so it could not
be tested and would change with the Pi model. Here a change counts once the pin has been
steady for `bounce_s`, the level is read from the pin then (gpiozero warns the level passed
to the callback may be stale), and the event carries the time of the first edge.

Outputs: see drivers.gpio.outputs (loop timers, safe state). Unlock and Feedback arrive by
`ctx.subscribe` on the loop thread and write the pin before returning: measured on
MockFactory, an Unlock reaches the relay pin in a few µs.

Start and stop: the current state of every door and of the ignition is emitted once the
pins are open, so services know it without waiting for a change; then `ready`. However
the driver ends (cancelled, failed), the relay is de-energised and the buzzer and LEDs
turned off before the pins are released. With `pin_factory = "mock"`, the levels a test or
the rig drove on the inputs are kept across a restart, as the outside circuit would keep
them (a MockPin drives itself to its pull when opened or closed), so a restarted driver
does not see every door open.

Wiring note: after the daemon exits, and while the Pi boots, the pins are inputs. The lock
relay's driver must stay off when its pin floats (a pull-down on an active-high driver;
active-low relay boards have their own pull-up), or the door opens when edged stops.
"""

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

from gpiozero import LED, Buzzer, Device, InputDevice, OutputDevice
from gpiozero.exc import BadPinFactory, GPIOPinInUse
from gpiozero.pins.mock import MockFactory, MockPin

from core.driver import DriverContext, DriverOptions, Opens
from core.errors import DriverError
from core.events import (
    Crossing,
    DoorInput,
    Feedback,
    FeedbackPattern,
    IgnitionInput,
    PanicInput,
    Unlock,
)
from drivers.gpio.beams import BeamCounter, Glitch, Output, Passage, Stuck
from drivers.gpio.mockwire import MockWire
from drivers.gpio.options import BeamPair, GpioOptions, Pull
from drivers.gpio.outputs import INDICATORS, Indicator, Indicators, LockRelay
from drivers.gpio.pins import name

log = logging.getLogger(__name__)

PULL_UP: dict[Pull, bool | None] = {"up": True, "down": False, "none": None}
FEEDBACK_PATTERNS = frozenset(get_args(FeedbackPattern))

_shared_mock: MockFactory | None = None


def mock_factory() -> MockFactory:
    """The MockFactory the mock board uses: gpiozero's own if a test installed one
    (`Device.pin_factory = MockFactory()`, then `Device.pin_factory.pin(17).drive_low()`),
    else one for the process, so a restarted driver finds the levels it left."""
    global _shared_mock
    if isinstance(Device.pin_factory, MockFactory):
        return Device.pin_factory
    if _shared_mock is None:
        _shared_mock = MockFactory()
    return _shared_mock


@dataclass(frozen=True, slots=True)
class PinUse:
    """A pin the board opened: what it is for, which way, gpiozero's pin object."""

    role: str
    direction: Literal["in", "out"]
    pin: Any


class _OutLine:
    """An output at the logical level (True = energised). Every call writes the pin (a
    safe-state "off" must not trust a cache); watchers (mockwire) hear of real changes,
    with the electrical level and the time of the write."""

    def __init__(self, device: OutputDevice, bcm: int, active_high: bool, board: "_Board") -> None:
        self.device = device
        self.bcm = bcm
        self.active_high = active_high
        self.board = board
        self.on = False

    def set(self, on: bool) -> None:
        if on:
            self.device.on()
        else:
            self.device.off()
        changed, self.on = on != self.on, on
        if changed and self.board.watchers:
            ts = time.monotonic()
            for watcher in list(self.board.watchers):
                watcher(self.bcm, on == self.active_high, ts)


class _Debounced:
    """A contact whose change counts once the pin has been steady for bounce_s."""

    def __init__(
        self,
        board: "_Board",
        device: InputDevice,
        active_high: bool,
        bounce_s: float,
        report: Callable[[bool, float], None],
    ) -> None:
        self.board = board
        self.device = device
        self.active_high = active_high
        self.bounce_s = bounce_s
        self.report = report
        self.value = self.read()
        self.first_edge: float | None = None
        self.timer: asyncio.TimerHandle | None = None

    def read(self) -> bool:
        return bool(self.device.pin.state) == self.active_high

    def edge(self, state: int, ts: float) -> None:
        if self.first_edge is None:
            self.first_edge = ts
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.board.later(ts + self.bounce_s, self.settle)

    def settle(self) -> None:
        self.timer = None
        ts, self.first_edge = self.first_edge, None
        value = self.read()
        if value != self.value and ts is not None:
            self.value = value
            self.report(value, ts)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Doorway:
    """A pair of beams feeding the direction machine; Crossing events out."""

    def __init__(
        self, board: "_Board", options: BeamPair, outer: InputDevice, inner: InputDevice
    ) -> None:
        self.board = board
        self.options = options
        self.devices = {"outer": outer, "inner": inner}
        self.counter = BeamCounter(
            options.min_block_s,
            options.max_transit_s,
            outer_blocked=self.read("outer"),
            inner_blocked=self.read("inner"),
            now=time.monotonic(),
        )
        self.timer: asyncio.TimerHandle | None = None

    def read(self, beam: Literal["outer", "inner"]) -> bool:
        return bool(self.devices[beam].pin.state) == self.options.active_high

    def edge(self, beam: Literal["outer", "inner"], state: int, ts: float) -> None:
        # lgpio reports 2 for a watchdog timeout: no level, so read it
        blocked = bool(state) == self.options.active_high if state in (0, 1) else self.read(beam)
        self.handle(self.counter.feed(beam, blocked, ts))

    def tick(self) -> None:
        self.timer = None
        self.handle(self.counter.advance(time.monotonic()))

    def handle(self, outputs: list[Output]) -> None:
        ctx, door = self.board.ctx, self.options.door
        for out in outputs:
            if isinstance(out, Passage):
                ctx.emit(Crossing(door, out.direction, out.ts))
            elif isinstance(out, Glitch):
                ctx.count("beam_glitch")
            elif isinstance(out, Stuck):
                ctx.count("beam_stuck")
                ctx.log.warning(
                    "door %s: %s beam blocked for %g s with no change: dirty or misaligned, "
                    "or someone standing in the door; not counting until both are clear",
                    door,
                    " and ".join(out.blocked) or "a",
                    self.options.max_transit_s,
                )
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        deadline = self.counter.next_deadline()
        if deadline is not None:
            self.timer = self.board.later(deadline, self.tick)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Board:
    """The open pins of one run of the driver; `close` always leaves outputs safe."""

    def __init__(
        self, options: GpioOptions, ctx: DriverContext, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.options = options
        self.ctx = ctx
        self.loop = loop
        self.factory: MockFactory | None = mock_factory() if options.pin_factory == "mock" else None
        self.devices: list[Device] = []
        self.pins: dict[int, PinUse] = {}
        self.watchers: list[Callable[[int, bool, float], None]] = []
        self.failed: asyncio.Future[None] = loop.create_future()
        self.closed = False
        self._callbacks: list[Callable[[float, int], None]] = []  # gpiozero keeps weak refs
        self.doors: list[_Debounced] = []
        self.doorways: list[_Doorway] = []
        self.panic: _Debounced | None = None
        self.panic_hold: asyncio.TimerHandle | None = None
        self.panic_pressed = False
        self.ignition: _Debounced | None = None
        self.lock: LockRelay | None = None
        self.indicators: Indicators | None = None

    # -- plumbing -----------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        """Something broke in a callback: `run` raises it, the supervisor restarts."""
        if not self.failed.done():
            self.failed.set_exception(exc)

    def later(self, when: float, callback: Callable[..., None], *args: Any) -> asyncio.TimerHandle:
        """Call back at a time.monotonic() instant, on the loop, failing the board on error."""
        delay = max(0.0, when - time.monotonic())
        return self.loop.call_later(delay, self._guarded, callback, *args)

    def _guarded(self, callback: Callable[..., None], *args: Any) -> None:
        if self.closed:
            return  # queued before the stop; the pins are gone
        try:
            callback(*args)
        except Exception as exc:  # a failed write, or a service raising behind emit
            self.fail(exc)

    def _open(self, role: str, bcm: int, make: Callable[[], Device]) -> Any:
        try:
            device = make()
        except BadPinFactory as exc:
            raise DriverError(
                f"no GPIO here ({exc}): on a Raspberry Pi install python3-lgpio (or "
                "RPi.GPIO); elsewhere use pin_factory = 'mock'"
            ) from exc
        except GPIOPinInUse as exc:
            raise DriverError(
                f"{role}: {name(bcm)} is already in use in this process ({exc}); is it "
                "in two gpio drivers of the config?"
            ) from exc
        except Exception as exc:  # lgpio 'GPIO busy', permissions...
            raise DriverError(
                f"cannot open {role} on {name(bcm)}: {type(exc).__name__}: {exc}; is another "
                "program using it, and may this user open /dev/gpiochip* (group gpio)?"
            ) from exc
        self.devices.append(device)
        return device

    def _driven(self, bcm: int) -> bool | None:
        """The level on a mock input before we open it: a test or the rig drove it."""
        if self.factory is None:
            return None
        for info, pin in self.factory.pins.items():
            if info.name == name(bcm) and pin.function == "input":
                return bool(pin.state)
        return None

    def _input(self, role: str, bcm: int, pull: Pull) -> InputDevice:
        pull_up = PULL_UP[pull]
        driven = self._driven(bcm)
        device: InputDevice = self._open(
            role,
            bcm,
            lambda: InputDevice(
                bcm,
                pull_up=pull_up,
                active_state=True if pull_up is None else None,
                pin_factory=self.factory,
            ),
        )
        self.pins[bcm] = PinUse(role, "in", device.pin)
        if driven is not None:  # MockPin drives to the pull when opened; the circuit wins
            (device.pin.drive_high if driven else device.pin.drive_low)()
        return device

    def _watch(self, device: InputDevice, handler: Callable[[int, float], None]) -> None:
        """Edges of the pin, from gpiozero's thread to `handler(state, ts)` on the loop."""
        loop = self.loop
        guarded = self._guarded

        def changed(ticks: float, state: int) -> None:  # gpiozero's thread
            ts = time.monotonic()
            with contextlib.suppress(RuntimeError):  # loop closed: the driver is gone
                loop.call_soon_threadsafe(guarded, handler, state, ts)

        self._callbacks.append(changed)
        pin = device.pin
        pin.bounce = None  # debounced here, the same on every pin factory
        pin.edges = "both"
        pin.when_changed = changed

    def _output(self, role: str, cls: type[OutputDevice], bcm: int, active_high: bool) -> _OutLine:
        device: OutputDevice = self._open(
            role,
            bcm,
            lambda: cls(
                bcm, active_high=active_high, initial_value=False, pin_factory=self.factory
            ),
        )
        self.pins[bcm] = PinUse(role, "out", device.pin)
        return _OutLine(device, bcm, active_high, self)

    # -- opening ------------------------------------------------------------------------

    def open(self) -> None:
        """Open every pin; on any failure, release those already open and raise."""
        try:
            self._open_all()
        except BaseException:
            self.close()
            raise

    def _open_all(self) -> None:
        o = self.options
        for d in o.doors:
            dev = self._input(f"door {d.name}", d.pin, d.pull)
            door = _Debounced(self, dev, d.active_high, d.bounce_s, self._door_reporter(d.name))
            self._watch(dev, door.edge)
            self.doors.append(door)
        for b in o.beams:
            outer = self._input(f"door {b.door} outer beam", b.outer, b.pull)
            inner = self._input(f"door {b.door} inner beam", b.inner, b.pull)
            way = _Doorway(self, b, outer, inner)
            self._watch(outer, functools.partial(way.edge, "outer"))
            self._watch(inner, functools.partial(way.edge, "inner"))
            self.doorways.append(way)
        if o.panic is not None:
            dev = self._input("panic button", o.panic.pin, o.panic.pull)
            self.panic = _Debounced(
                self, dev, o.panic.active_high, o.panic.bounce_s, self._panic_changed
            )
            self._watch(dev, self.panic.edge)
        if o.ignition is not None:
            dev = self._input("ignition", o.ignition.pin, o.ignition.pull)
            self.ignition = _Debounced(
                self, dev, o.ignition.active_high, o.ignition.bounce_s, self._ignition_changed
            )
            self._watch(dev, self.ignition.edge)
        if o.lock is not None:
            line = self._output("lock relay", OutputDevice, o.lock.pin, o.lock.active_high)
            self.lock = LockRelay(self.loop, line, o.max_unlock_s, self.fail)
        lines: dict[Indicator, _OutLine] = {}
        for key in INDICATORS:
            part = getattr(o, key)
            if part is not None:
                cls = Buzzer if key == "buzzer" else LED
                lines[key] = self._output(f"{key} {cls.__name__}", cls, part.pin, part.active_high)
        if lines:
            self.indicators = Indicators(self.loop, lines, o.feedback, self.fail)

    def start(self) -> None:
        """Tell the services the state of things now; a panic held at start starts its hold."""
        now = time.monotonic()
        for d, door in zip(self.options.doors, self.doors, strict=True):
            self.ctx.emit(DoorInput(d.name, door.value, now))
        if self.ignition is not None:
            self.ctx.emit(IgnitionInput(self.ignition.value, now))
        if self.panic is not None and self.panic.value:
            self._panic_changed(True, now)

    # -- inputs -------------------------------------------------------------------------

    def _door_reporter(self, door: str) -> Callable[[bool, float], None]:
        def report(is_open: bool, ts: float) -> None:
            self.ctx.emit(DoorInput(door, is_open, ts))

        return report

    def _ignition_changed(self, on: bool, ts: float) -> None:
        self.ctx.emit(IgnitionInput(on, ts))

    def _panic_changed(self, pressed: bool, ts: float) -> None:
        panic = self.options.panic
        assert panic is not None
        if pressed:
            if self.panic_hold is None and not self.panic_pressed:
                self.panic_hold = self.later(ts + panic.hold_s, self._panic_held, ts)
        elif self.panic_hold is not None:  # let go before hold_s: a brush, not an alarm
            self.panic_hold.cancel()
            self.panic_hold = None
            self.ctx.count("panic_brush")
        elif self.panic_pressed:
            self.panic_pressed = False
            self.ctx.emit(PanicInput(False, ts))

    def _panic_held(self, ts: float) -> None:
        self.panic_hold = None
        self.panic_pressed = True
        self.ctx.emit(PanicInput(True, ts))

    # -- outputs: handlers subscribed to service events, on the loop thread ------------

    def on_unlock(self, event: Unlock) -> None:
        if self.closed:
            return
        assert self.lock is not None, "Unlock is subscribed only with a lock relay"
        try:
            accepted = self.lock.unlock(event.pulse_s)
        except Exception as exc:  # the write failed: the supervisor reopens the pins
            self.fail(exc)
            return
        self.ctx.count("unlock" if accepted else "unlock_refused")
        if not accepted:
            self.ctx.log.warning("Unlock with pulse_s=%r refused: not a duration", event.pulse_s)

    def on_feedback(self, event: Feedback) -> None:
        if self.closed or self.indicators is None:
            return
        if event.pattern not in FEEDBACK_PATTERNS:
            self.ctx.count("feedback_unknown")
            return
        try:
            self.indicators.show(event.pattern)
        except Exception as exc:
            self.fail(exc)

    # -- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Outputs to their safe state first, then release every pin. Never raises."""
        if self.closed:
            return
        self.closed = True
        for safe in (self.lock, self.indicators):  # relay first: it is the one that matters
            if safe is not None:
                try:
                    safe.off()
                except Exception:
                    log.exception("could not put the %s in its safe state", type(safe).__name__)
        for item in (*self.doors, *self.doorways, self.panic, self.ignition):
            if item is not None:
                item.stop()
        if self.panic_hold is not None:
            self.panic_hold.cancel()
        driven = [
            (use.pin, use.pin.state)
            for use in self.pins.values()
            if use.direction == "in" and isinstance(use.pin, MockPin)
        ]
        for device in reversed(self.devices):
            try:
                device.close()
            except Exception:
                log.exception("could not release %r", device)
        for pin, state in driven:  # what the outside circuit would keep driving
            if pin.function == "input":
                (pin.drive_high if state else pin.drive_low)()
        self.watchers.clear()


class GpioBoard:
    """The node's GPIO: inputs to events, Unlock and Feedback to the outputs."""

    Options: ClassVar[type[DriverOptions]] = GpioOptions

    @classmethod
    def opens(cls, options: GpioOptions) -> Opens:
        if options.pin_factory == "mock":
            return Opens(simulated="simulated GPIO (mock pins)")
        return Opens(gpio_chips=options.pin_factory)

    def __init__(self, options: GpioOptions) -> None:
        self.options = options
        self.board: _Board | None = None  # the open pins while running (tests, the rig)

    async def run(self, ctx: DriverContext) -> None:
        loop = asyncio.get_running_loop()
        board = _Board(self.options, ctx, loop)
        wire: MockWire | None = None
        board.open()
        self.board = board
        try:
            if self.options.lock is not None:  # door.unlock says no_lock when nobody listens
                ctx.subscribe(Unlock, board.on_unlock)
            ctx.subscribe(Feedback, board.on_feedback)
            board.start()
            if self.options.mock_control is not None:
                wire = MockWire(board.pins, board.watchers, ctx.log)
                await wire.start(self.options.mock_control)
            ctx.log.info("gpio ready: %s", describe(board))
            ctx.ready()
            await board.failed
        finally:
            board.close()
            self.board = None
            if wire is not None:
                await wire.close()


def describe(board: _Board) -> str:
    """One log line: which pin does what."""
    uses = ", ".join(f"{use.role} {name(bcm)}" for bcm, use in sorted(board.pins.items()))
    factory = "mock" if board.factory is not None else "default"
    return f"{uses or 'no pins'} ({factory} pin factory)"
