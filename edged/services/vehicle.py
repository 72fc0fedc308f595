"""The vehicle as its CAN bus tells it: `vehicle`, `vehicle/faults`, doors, ignition, trips.

Which DBC signal feeds which field is config (`[services.vehicle]`), so a bus with other
signals needs a DBC edit and a config line, not code. `vehicle` goes out at once when a door,
the ignition or the trip changes; otherwise the values are looked at every `period_s` and
sent when one moved past its deadband since the last message (speed by 10 km/h, fuel by a
litre…), and at least every `heartbeat_s` while the bus talks (`on_change = false`: every
`period_s`, the former rule). Each message carries every value at full precision: the
deadbands decide when, never what. `vehicle/faults` only when the set of active DM1 codes
or lamps changes, or an ECU's DM1 stops coming (`DM1_SILENT_S`), and no more often than
`FAULTS_BURST` at once then `FAULTS_PER_S`: an ECU sends its DM1 once a second and on a
change, so a list changing faster is a device on the bus, whose every change would be a
retained message built and queued (the latest list goes out when its turn comes).

A door's changes go through the flap guard of a door contact on GPIO
(drivers/gpio/flapping.py): a door status that changes faster than a door moves (a door
controller's loose contact, a device on the FMS port sending DC2) is no door event per
frame, QoS 1 each, filling the outbox for taps and alarms; it is counted
(`vehicle.door_flapping`) and reported once steady. Each frame's door status also goes on
the node's bus as it came (`VehicleDoorStatus`, unguarded: the GPIO driver gates the
counting beams of that door by it, and wants every frame, to tell a bus gone quiet).
A door that ECUs give different statuses of (`_DoorWitnesses`) is unknown to the gate and
to dispatch (`events/door` `disputed`, `unknown` in `vehicle`) until they agree.

A door the bus never gives a status of while the bus talks (`DOOR_UNHEARD_S` of frames of
other parameter groups, the ignition not known off) and the vehicle is awake (the sense
line on, or the engine heard running or the vehicle moving meanwhile) goes on the node's
bus once as
`VehicleDoorUnheard`, with the door positions its message did give: the GPIO driver's gate
of that door's beams is off until a status comes, and only the GPIO driver, which has the
beams, reports it (the default doors of the config on a truck with no DC2 are no fault).
"""

import asyncio
import dataclasses
import itertools
import logging
import re
import time
from typing import Any, Literal

from core.driver import DriverReady
from core.events import (
    DOOR_HEARD,
    ActiveFaults,
    IgnitionInput,
    J1939Signals,
    VehicleDoorStatus,
    VehicleDoorUnheard,
)
from core.logs import flood_key
from core.ratelimit import TokenBucket
from drivers.gpio.flapping import FlapGuard, FlapOutput, Flapping, Report
from edged.commands.args import only
from edged.commands.spec import CommandSpec
from edged.config.services import TripServiceConfig, VehicleServiceConfig
from edged.errors import CommandError
from edged.host import Host
from edged.payloads import DoorEvent, EcuLamps, FaultCode, Faults, Vehicle
from edged.services.base import Service
from edged.services.events import VehicleStatus, WheelSpeed
from edged.services.trips import OpenTrip, Reading, TripRecorder
from edged.topics import DOOR, FAULTS, VEHICLE

log = logging.getLogger(__name__)

DOOR_STATES = {0: "closed", 1: "open"}  # J1939 2-bit status: 2 error, 3 not available
SOURCE_HOLD_S = 5.0
"""How long a value stays with its ECU after that ECU's last value (VDHR and LFC come every
second, CCVS1 every 100 ms): then another ECU sending it takes over."""
DM1_SILENT_S = 3.5
"""An ECU broadcasts its DM1 every second, faults or none (J1939-73): after three periods
and a slow BAM transfer's worth without one (powered off, unplugged, bus-off), what it last
said is no longer current, and its codes are no longer published as active."""
MAX_ACTIVE_CODES = 256
"""Codes listed in `vehicle/faults`, lowest source addresses first; more are counted in
`omitted` (a truck with a cut harness shows a few dozen; 445 per ECU fit in a DM1, which
from every address a device on the bus can use was a message of megabytes)."""
FAULTS_BURST = 10
"""`vehicle/faults` sent at once, in a row (every ECU's first DM1 at key-on, a few changes)."""
FAULTS_PER_S = 1.0
"""And then at most this many a second: the changes in between are taken in, the latest
list sent when its turn comes (`check_faults`, every second)."""
DOOR_UNHEARD_S = 30.0
"""How long the bus talks without a status of a door before it is `VehicleDoorUnheard`.
FMS sends DC2 every 100 ms where the vehicle has doors (drivers/can/fms.dbc), and the FMS
standard (v04, general annotations) has most values reliable about 10 s after ignition on:
three times that leaves a door controller that wakes after the engine ECU its time, and
is still short against the ride between two stops."""
BUS_GAP_S = 5.0
"""A bus that gave no parameter group for this long stopped talking (ignition off, the
adapter unplugged): the time towards `DOOR_UNHEARD_S` starts again. CCVS1 and EEC1 come
every 10-100 ms; a `min_interval_s` thinning them to fewer than one in 5 s leaves the
door unreported, not reported wrongly."""
DOOR_DISAGREE_S = 1.5
"""How long two ECUs may give a door different statuses (0 and 1) before the door is
unknown to the beams' gate: a gateway passing on the door controller's DC2 lags it by a
frame at each change (100 ms, a frame of 1 s at worst), while a device on the FMS port
saying "closed" against the door controller's "open" disagrees for the whole stop."""
MOVING_KMH = 2.0
"""A bus with no sense line nor an engine heard running (an e-bus without EEC1) is awake
once its wheel-based speed reaches this: a tachograph on permanent power talks on, its
speed 0, with the key off and the door controller asleep."""


class _DoorWitnesses:
    """Each ECU's last status of one door (0 closed or 1 open, with when), to tell ECUs
    that disagree on it. The door's value follows the first ECU to give it
    (`_from_its_source`): another ECU giving it first (a gateway that fills in "closed", a
    device on the FMS port) hid the door controller's openings, and the beams dropped the
    riders who walked through them, with nothing said.

    Per status, the ECUs whose last word it is, oldest first: each frame costs the same
    however many addresses a device on the bus sends under (a scan of them all was ~60 µs
    a frame at 127, on every DC2 frame of such a flood). A disagreement counts once both
    statuses were said again after it began: an ECU fallen silent (an FMS gateway that
    stops at ignition off while the door controller, on permanent power, goes on) keeps
    its last word current for `SOURCE_HOLD_S`, but says nothing against a door opened
    meanwhile."""

    def __init__(self) -> None:
        self.saying: tuple[dict[int, float], dict[int, float]] = ({}, {})
        self.said_at = [float("-inf"), float("-inf")]  # when an ECU last said 0, and 1
        self.since: float | None = None  # the ECUs current disagree since then
        self.told = False  # this disagreement reported

    def see(self, source: int, status: int | None, ts: float) -> None:
        if status == 0 or status == 1:
            self.saying[1 - status].pop(source, None)
            saying = self.saying[status]
            saying.pop(source, None)  # to the end: the dict stays oldest first
            saying[source] = ts
            self.said_at[status] = ts
        if self._current(0, ts) and self._current(1, ts):
            self.since = ts if self.since is None else self.since
        else:
            self.since = None

    def _current(self, status: int, ts: float) -> bool:
        """Whether an ECU's last word on the door, within `SOURCE_HOLD_S`, is `status`:
        those older are dropped from the front, so each is looked at once after it ages."""
        saying = self.saying[status]
        while saying:
            source, at = next(iter(saying.items()))
            if ts - at < SOURCE_HOLD_S:
                return True
            del saying[source]
        return False

    def disagree(self, ts: float) -> bool:
        since = self.since
        return (
            since is not None
            and ts - since >= DOOR_DISAGREE_S
            and min(self.said_at) > since  # both said again since: no ECU fallen silent
        )

    def sources(self, ts: float) -> str:
        """Each current ECU's status, for the warning: eight at most (a device on the bus
        may send under every address)."""
        said = [
            f"{source:#04x} {'open' if st else 'closed'}"
            for source, st in sorted(
                (source, st)
                for st in (0, 1)
                for source, at in self.saying[st].items()
                if ts - at < SOURCE_HOLD_S
            )
        ]
        more = f" and {len(said) - 8} more" if len(said) > 8 else ""
        return ", ".join(said[:8]) + more


def _status(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _split(ref: str) -> tuple[str, str]:
    message, _, signal = ref.partition(".")
    return message, signal


def _positions(signal: str, given: set[str]) -> tuple[str, ...]:
    """The door numbers of the signals in `given` named as `signal` but for its number
    (Door1OpenStatus, Door2OpenStatus…: "1", "2"), in order; none if it has no number."""
    if not any(ch.isdigit() for ch in signal):
        return ()
    pattern = re.compile(re.sub(r"\d+", lambda _: r"(\d+)", re.escape(signal), count=1))
    found = {m.group(1) for name in given if (m := pattern.fullmatch(name))}
    return tuple(sorted(found, key=int))


class VehicleService(Service):
    def __init__(self, host: Host, config: VehicleServiceConfig, trips: TripServiceConfig) -> None:
        super().__init__(host)
        self.config = config
        self.trips_config = trips
        self.trips = TripRecorder(host, trips)
        self.values: dict[str, float | int | None] = {}
        self.doors: dict[str, str] = {}  # as reported: a flapping door's stays as it was
        self._door_guards: dict[str, FlapGuard] = {}
        self._flap_warned: set[str] = set()
        self.extra: dict[str, float | int | None] = {}
        self.ignition: bool | None = None
        self._engine_running_at: float | None = None
        self._last_can = 0.0
        self._pace = 1.0  # the bus's seconds per second: a replay's speed (J1939Signals.pace)
        self._ecus: dict[int, ActiveFaults] = {}  # source -> its last DM1, while current
        self._silent: set[int] = set()  # sources whose DM1 stopped coming
        self._published_faults: Faults | None = None
        # vehicle/faults that may go out now
        self._fault_budget = TokenBucket(FAULTS_BURST, FAULTS_PER_S * 60.0, time.monotonic())
        self._faults_due = False  # a change not published yet: its turn had not come
        self._sent: tuple[Vehicle, float] | None = None  # the last `vehicle`, monotonic time
        self._wanted: dict[str, list[tuple[str, str, str]]] = {}  # message -> (kind, key, sig)
        self._sources: dict[str, tuple[int, float]] = {}  # key -> (ECU, ts of its last value)
        for kind, key, ref in config.signals():
            if ref:
                self._want(ref, kind, key)
        self._distance_message = _split(config.total_distance or ".")[0]
        self._fuel_message = _split(config.fuel_used or ".")[0]
        if self.trips.trip is not None and self.trips.trip.trigger == "ignition":
            # restarted mid-trip: assume the engine still runs until the bus says otherwise
            self.ignition = True
            self._engine_running_at = time.monotonic()
        self._ignition_wired = False  # an ignition sense line on GPIO outranks engine speed
        host.bus.subscribe(J1939Signals, self.on_signals)
        host.bus.subscribe(ActiveFaults, self.on_faults)
        host.bus.subscribe(IgnitionInput, self.on_ignition_input)
        host.bus.subscribe(DriverReady, self._tell_unheard)
        # doors never given a status (0, 1, 2) since the start, by their "MESSAGE.Signal"
        self._door_unheard: dict[str, tuple[str, str]] = {
            door: _split(ref) for door, ref in config.doors.items()
        }
        self._door_told: dict[str, VehicleDoorUnheard] = {}  # found unheard, not heard since
        # doors whose finding a listening gate had (a GPIO driver running with beams there):
        # a start after that is told it `again`; one after a finding nobody heard, as new
        self._door_reached: set[str] = set()
        self._door_last: dict[str, VehicleDoorStatus] = {}  # each door's last status, for a
        # restarted GPIO driver: a door gone quiet must stay known, and known quiet
        self._door_messages_wanted = {message for message, _ in self._door_unheard.values()}
        self._door_messages: dict[str, set[str]] = {}  # door message seen -> positions given
        self._witnesses: dict[str, _DoorWitnesses] = {}  # door -> each ECU's last status
        self._disputed: set[str] = set()  # doors published unknown: their ECUs disagree
        # (since, last, woke): the bus talking without a gap, the engine run or the vehicle
        # moved in that time
        self._talk = (float("-inf"), float("-inf"), False)
        self._status: VehicleStatus | None = None
        self.tell()

    def commands(self) -> list[CommandSpec]:
        return [
            CommandSpec("trip.start", self.command_trip_start, scope="operate"),
            CommandSpec("trip.stop", self.command_trip_stop, scope="operate"),
        ]

    def _want(self, ref: str, kind: str, key: str) -> None:
        message, signal = _split(ref)
        self._wanted.setdefault(message, []).append((kind, key, signal))

    # -- signals ----------------------------------------------------------------------

    def on_signals(self, event: J1939Signals) -> None:
        self._last_can = time.monotonic()
        self._pace = event.pace
        changed = False
        taken: set[str] = set()
        for kind, key, signal in self._wanted.get(event.name, ()):
            if signal not in event.signals:
                continue
            value = event.signals[signal]
            if kind == "door":
                witnesses = self._witnesses.setdefault(key, _DoorWitnesses())
                witnesses.see(event.source, _status(value), event.ts)
            if not self._from_its_source(key, event.source, value, event.ts):
                continue
            taken.add(key)
            if kind == "field":
                self.values[key] = value
            elif kind == "extra":
                self.extra[key] = value
            else:
                status = _status(value)
                if status in DOOR_HEARD:
                    self._door_heard(key)
                disputed = self._disagree(key, event.ts)
                if disputed:
                    status = None  # nobody can tell which ECU is right: the door is unknown
                told = self._door_last[key] = VehicleDoorStatus(key, status, event.ts)
                self.host.bus.emit(told)
                if disputed:  # before this frame's change, which then goes unpublished
                    changed |= self._dispute(key, True)
                changed |= self._door(key, value, event.ts)
                if not disputed:  # after it: the agreed state is published once
                    changed |= self._dispute(key, False)
        speed = self.values.get("speed") if "speed" in taken else None
        if isinstance(speed, int | float) and speed >= 0:
            self.host.bus.emit(WheelSpeed(float(speed) / 3.6, event.ts))  # km/h in the DBC
        if event.name == self._distance_message and "total_distance" in taken:
            self.trips.feed(distance=self._reading("total_distance"))
        if event.name == self._fuel_message and "fuel_used" in taken:
            self.trips.feed(fuel=self._reading("fuel_used"))
        if "engine_speed" in taken:  # a stale speed is no running engine
            changed |= self._ignition_from_engine()
        if len(self._door_told) < len(self._door_unheard):  # a door left to tell
            rpm = self._number("engine_speed") if "engine_speed" in taken else None
            awake = (isinstance(speed, int | float) and speed >= MOVING_KMH) or (
                rpm is not None and rpm >= self.config.ignition_rpm
            )
            self._listen_for_doors(event, awake)
        if changed:
            self.publish()

    # -- doors the bus never tells ------------------------------------------------------

    def _listen_for_doors(self, event: J1939Signals, awake: bool) -> None:
        """Time the bus's talk, note which doors a door message gives (a status other than
        not available), and tell the doors that the bus still has not given once, if the
        vehicle was awake meanwhile: the sense line on, or this frame (`awake`) or one
        before it in this talk gave the engine running or the vehicle moving. ECUs on
        permanent power (a tachograph) talk with the key off, the door controller does not;
        an ignition merely assumed on (a restart mid-trip) is no engine heard."""
        since, last, woke = self._talk
        if event.ts - last > BUS_GAP_S or self.ignition is False:
            since, woke = event.ts, False  # the bus (or the vehicle) was off: start again
        woke |= awake
        self._talk = (since, max(last, event.ts), woke)
        if event.name in self._door_messages_wanted:
            given = self._door_messages.setdefault(event.name, set())
            given.update(name for name, value in event.signals.items() if value in DOOR_HEARD)
        if event.ts - since < DOOR_UNHEARD_S:
            return
        if not (woke or (self._ignition_wired and self.ignition is True)):
            return
        for door, (message, signal) in self._door_unheard.items():
            if door in self._door_told:
                continue
            seen = self._door_messages.get(message)
            told = VehicleDoorUnheard(
                door,
                f"{message}.{signal}",
                message_heard=seen is not None,
                positions=_positions(signal, seen or set()),
                talked_s=event.ts - since,
                ts=event.ts,
            )
            self._door_told[door] = told
            log.debug("door %s: no status on the CAN bus: %s", door, told)
            if self.host.bus.has_subscribers(VehicleDoorUnheard):
                self._door_reached.add(door)
            self.host.bus.emit(told)

    def _disagree(self, door: str, ts: float) -> bool:
        """Whether ECUs have given the door different statuses for `DOOR_DISAGREE_S`: then
        its beams count ungated (`beam_door_unknown`) rather than by the ECU followed,
        which may be the wrong one, and dispatch hears the door unknown (`_dispute`).
        Counted and warned once each time it starts."""
        witnesses = self._witnesses[door]
        if not witnesses.disagree(ts):
            if witnesses.told and witnesses.since is None:
                witnesses.told = False
                log.info("door %s: the ECUs sending its CAN status agree again", door)
            return False
        if not witnesses.told:
            witnesses.told = True
            self.host.counters.inc("vehicle.door_sources_disagree")
            log.warning(
                "door %s: ECUs on the CAN bus have given different statuses of it for %g s "
                "(%s): a gateway out of step with the door controller, a wrong door number "
                "in one of them, or a device on the FMS port forging DC2? Its beams count "
                "every walk ungated, and it is published unknown, until they agree "
                "(vehicle.door_sources_disagree; beam_door_unknown)",
                door,
                DOOR_DISAGREE_S,
                witnesses.sources(ts),
                extra=flood_key(door),
            )
        return True

    def _dispute(self, door: str, disputed: bool) -> bool:
        """Dispatch hears of a door the ECUs disagree on: an `events/door` with `disputed`
        (its `open` the state last published) as it starts, `unknown` in `vehicle` and no
        door events while it lasts, and the agreed state once they agree. It followed the
        first ECU to give the door, which may be the device on the FMS port."""
        if disputed == (door in self._disputed):
            return False
        state = self.doors.get(door)
        if disputed:
            self._disputed.add(door)
        else:
            self._disputed.discard(door)
        if state is not None:
            disputed_ = True if disputed else None  # absent once they agree
            body = DoorEvent(door=door, open=state == "open", source="can", disputed=disputed_)
            self.host.publish(DOOR, body)
        return True

    def _door_heard(self, door: str) -> None:
        self._door_unheard.pop(door, None)
        self._door_told.pop(door, None)
        self._door_reached.discard(door)

    def _tell_unheard(self, event: DriverReady) -> None:
        """A driver (re)started: the GPIO driver's gates learn again what the bus lacks, and
        each door's last status as it came, stamped when it came: a door whose DC2 stopped
        before the restart is then a gate that knows it went quiet (`beam_door_unheard`),
        not beams without a door that nothing reports. To a gate that heard it, it is the
        frame it already has. A door unheard is told `again` once a gate had it: the finding
        is not new, and a GPIO driver in a restart loop must not count and warn it at every
        start. Found while no GPIO driver ran (its backoff, a late first start), nobody
        counted nor warned it: this start is told it as new."""
        for last in list(self._door_last.values()):
            self.host.bus.emit(last)
        listening = self.host.bus.has_subscribers(VehicleDoorUnheard)
        for door, told in list(self._door_told.items()):
            self.host.bus.emit(dataclasses.replace(told, again=door in self._door_reached))
            if listening:
                self._door_reached.add(door)

    def _from_its_source(self, key: str, source: int, value: object, ts: float) -> bool:
        """Whether `key` takes this value: each value follows one ECU, the first to give it
        (on a truck's backbone the tachograph and the cluster both send VDHR, their
        odometers metres apart; a body controller sends CCVS1 with no speed). Another ECU
        takes over only after `SOURCE_HOLD_S` without a value from the first one."""
        bound = self._sources.get(key)
        if bound is None or bound[0] == source:
            if value is not None:
                self._sources[key] = (source, ts)
            return True
        if value is None or ts - bound[1] < SOURCE_HOLD_S:
            return False
        self._sources[key] = (source, ts)
        return True

    def _number(self, name: str) -> float | None:
        value = self.values.get(name)
        return float(value) if isinstance(value, int | float) else None

    def _reading(self, name: str) -> Reading | None:
        """A total for the trip, with when its ECU gave it (a value is there only as long
        as its ECU's last word on it was a number, whose time `_sources` keeps)."""
        value = self._number(name)
        bound = self._sources.get(name)
        if value is None or bound is None:
            return None
        return Reading(value, bound[1], self._pace)

    def _door(self, door: str, value: float | int | None, ts: float) -> bool:
        state = DOOR_STATES.get(int(value)) if isinstance(value, int | float) else None
        if state is None:
            return False
        guard = self._door_guards.get(door)
        if guard is None:  # the first state is where the door is, not a change
            self._door_guards[door] = FlapGuard(state == "open")
            self.doors[door] = state
            return True
        return self._door_reports(door, guard.change(state == "open", ts))

    def _door_reports(self, door: str, outputs: list[FlapOutput]) -> bool:
        changed = False
        for out in outputs:
            if isinstance(out, Report):
                self.doors[door] = "open" if out.value else "closed"
                if door in self._disputed:  # unknown to dispatch until the ECUs agree
                    continue
                self.host.publish(DOOR, DoorEvent(door=door, open=out.value, source="can"))
                changed = True
            elif isinstance(out, Flapping):
                self.host.counters.inc("vehicle.door_flapping")
                if door not in self._flap_warned:
                    self._flap_warned.add(door)
                    log.warning(
                        "door %s: its CAN status changes faster than a door moves (a loose "
                        "contact, or a device on the bus?): no door events until it is steady; "
                        "further flaps are only counted (vehicle.door_flapping)",
                        door,
                    )
        return changed

    def check_doors(self, now: float | None = None) -> None:
        """A door whose status flapped and has been steady since reports where it is
        (`now`: monotonic, as the events' `ts`)."""
        now = time.monotonic() if now is None else now
        changed = False
        for door, guard in self._door_guards.items():
            if guard.flapping:
                changed |= self._door_reports(door, guard.advance(now))
        if changed:
            self.publish()

    def on_ignition_input(self, event: IgnitionInput) -> None:
        self._ignition_wired = True
        if event.on != self.ignition:
            self._set_ignition(event.on)
            self.publish()

    def _ignition_from_engine(self) -> bool:
        """The engine ECU just gave its speed: on when it runs. Only its own message counts:
        other ECUs (a tachograph on permanent power) talk on after the key is off, and the
        last engine speed then is not a running engine."""
        if self._ignition_wired:
            return False
        rpm = self._number("engine_speed")
        if rpm is not None and rpm >= self.config.ignition_rpm:
            self._engine_running_at = time.monotonic()
            if self.ignition is not True:
                return self._set_ignition(True)
        return False

    def check_ignition(self, now: float | None = None) -> None:
        """Off once the engine has been stopped, or the bus silent, for the configured time."""
        now = time.monotonic() if now is None else now
        if self.ignition is not True or self._ignition_wired:
            return
        running = self._engine_running_at or 0.0
        if now - max(running, 0.0) >= self.config.ignition_off_after_s:
            self._set_ignition(False)
            self.publish()

    def _set_ignition(self, on: bool) -> bool:
        self.ignition = on
        if not self.trips_config.auto:
            return True
        if on and self.trips.trip is None:
            self._start_trip("ignition")
        elif not on and self.trips.trip is not None and self.trips.trip.trigger != "command":
            self.trips.stop()
        return True

    def _start_trip(self, trigger: Literal["ignition", "command"]) -> OpenTrip:
        return self.trips.start(
            trigger, distance=self._reading("total_distance"), fuel=self._reading("fuel_used")
        )

    # -- faults -----------------------------------------------------------------------

    def on_faults(self, event: ActiveFaults) -> None:
        last = self._ecus.get(event.source)
        self._ecus[event.source] = event
        if last is not None and last.codes == event.codes and last.lamps == event.lamps:
            return  # its DM1 of every second, as before: no change to publish nor defer
        self._silent.discard(event.source)
        self._publish_faults()

    def check_faults(self, now: float | None = None) -> None:
        """ECUs whose last DM1 is `DM1_SILENT_S` old (`now`: monotonic, as the events' `ts`)
        go from the active list to `silent`: a fault of an ECU that no longer talks is
        unknown, not active for ever on a retained topic."""
        now = time.monotonic() if now is None else now
        gone = [src for src, dm1 in self._ecus.items() if now - dm1.ts >= DM1_SILENT_S]
        if not gone:
            if self._faults_due:
                self._publish_faults(now)
            return
        for src in gone:
            del self._ecus[src]
            self._silent.add(src)
        self._publish_faults(now)

    def _publish_faults(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._fault_budget.wait_s(now) > 0:
            # faster than ECUs change their DM1: the latest goes out in turn
            if not self._faults_due:
                self._faults_due = True
                self.host.counters.inc("vehicle.faults_deferred")
            return
        self._faults_due = False
        ecus = sorted(self._ecus.items())
        codes = itertools.islice(
            ((src, c) for src, dm1 in ecus for c in dm1.codes), MAX_ACTIVE_CODES
        )
        active = [
            FaultCode(source=src, spn=c.spn, fmi=c.fmi, occurrence=c.occurrence, cm=c.cm)
            for src, c in codes
        ]
        omitted = sum(len(dm1.codes) for _, dm1 in ecus) - len(active)
        faults = Faults(
            active=active,
            lamps=[
                EcuLamps(
                    source=src,
                    malfunction=dm1.lamps.get("malfunction", 0),
                    red_stop=dm1.lamps.get("red_stop", 0),
                    amber_warning=dm1.lamps.get("amber_warning", 0),
                    protect=dm1.lamps.get("protect", 0),
                )
                for src, dm1 in ecus
            ],
            silent=sorted(self._silent),
            omitted=omitted or None,
        )
        if faults != self._published_faults:
            self._published_faults = faults
            self._fault_budget.take()
            self.host.publish(FAULTS, faults)

    # -- publishing -------------------------------------------------------------------

    def snapshot(self) -> Vehicle:
        v = self.values

        def num(name: str, scale: float = 1.0, digits: int = 1) -> float | None:
            x = v.get(name)
            return round(float(x) * scale, digits) if isinstance(x, int | float) else None

        return Vehicle(
            speed_kmh=num("speed"),
            total_distance_km=num("total_distance", 0.001, 3),
            fuel_level_pct=num("fuel_level"),
            fuel_used_l=num("fuel_used", 1.0, 1),
            engine_rpm=num("engine_speed", 1.0, 0),
            engine_hours=num("engine_hours", 1.0, 2),
            ignition=self.ignition,
            doors={
                door: "unknown" if door in self._disputed else state
                for door, state in self.doors.items()
            },
            extra=dict(self.extra),
            trip_id=self.trips.trip.trip_id if self.trips.trip else None,
        )

    def publish(self) -> None:
        snapshot = self.snapshot()
        self._sent = (snapshot, time.monotonic())
        self.host.publish(VEHICLE, snapshot, qos=self.config.qos)
        self.tell()

    def tell(self) -> None:
        """`VehicleStatus` on the bus when the ignition, the open doors or the trip changed
        (whoever waits for a parked vehicle: the update's safe moment). A door the ECUs
        disagree on is unknown, whatever the ECU followed says: not known shut."""
        status = VehicleStatus(
            ignition=self.ignition,
            open_doors=tuple(
                d for d, state in self.doors.items() if state == "open" and d not in self._disputed
            ),
            trip_id=self.trips.trip.trip_id if self.trips.trip else None,
            unknown_doors=tuple(sorted(self._disputed)),
        )
        if status != self._status:
            self._status = status
            self.host.bus.emit(status)

    def moved(self, now: Vehicle) -> bool:
        """A value moved past its deadband since the last `vehicle` (any change counts for
        doors, ignition, trip, `extra` and a value that appeared or vanished)."""
        if self._sent is None:
            return True
        last = self._sent[0]
        if (last.doors, last.ignition, last.trip_id, last.extra) != (
            now.doors,
            now.ignition,
            now.trip_id,
            now.extra,
        ):
            return True
        for name, band in self.config.deadbands.items():
            a, b = getattr(last, name), getattr(now, name)
            if a != b and (a is None or b is None or abs(b - a) >= band):
                return True
        return any(
            getattr(last, name) != getattr(now, name)
            for name in Vehicle.model_fields
            if name not in self.config.deadbands
        )

    def due(self, now: float) -> bool:
        """Whether the periodic look sends a `vehicle` now."""
        if not self.config.on_change or self._sent is None:
            return True
        if now - self._sent[1] >= self.config.heartbeat_s - 0.05:
            return True
        return self.moved(self.snapshot())

    async def run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            self.check_ignition()
            self.check_faults()
            self.check_doors()
            now = time.monotonic()
            if now - last >= self.config.period_s:
                last = now
                talks = self._last_can and now - self._last_can < self.config.period_s * 2
                if talks and self.due(now):
                    self.publish()

    # -- commands ---------------------------------------------------------------------

    async def command_trip_start(self, args: dict[str, Any]) -> dict[str, Any]:
        only("trip.start", args)
        if self.trips.trip is not None:
            raise CommandError(
                "trip_open",
                f"trip {self.trips.trip.trip_id} is open; stop it first with trip.stop",
            )
        trip = self._start_trip("command")
        self.tell()
        return {"trip_id": trip.trip_id, "started": trip.started}

    async def command_trip_stop(self, args: dict[str, Any]) -> dict[str, Any]:
        only("trip.stop", args)
        summary = self.trips.stop()
        if summary is None:
            raise CommandError("no_trip", "no trip is open")
        self.tell()
        published = summary.distance_km >= self.trips_config.min_distance_km
        return {**summary.to_json_dict(), "published": published}
