"""`gps.gpsd`: positions from a gpsd daemon, over its JSON protocol on TCP.

For a receiver that gpsd already owns (shared with chrony for time, or a binary-protocol
receiver only gpsd speaks). The driver sends `?WATCH={"enable":true,"json":true}` and turns
each TPV report into one `Fix`; satellites used and HDOP come from the latest SKY report
(gpsd sends it once per cycle, usually after the TPV, so they may lag by one epoch).
A TPV with mode 0/1 (no fix) or without time is a void Fix (mode NONE, quality 0).

A fix dated between the GPS epoch (6 January 1980) and 2017 is a week-number rollover, as
the NMEA driver reads one: gpsd 3.20-3.22 dated every fix 1024 weeks early from 24 October
2021 on, and a gpsd started on a Pi whose clock said 1970 resolves the week a rollover
early. The date is moved by the NMEA driver's rule (drivers.gps.dating: whole 1024-week
periods, no later than the system clock allows, and `date_known=False` unless within a
day of it, or 60 days past it when it is not synchronised), counted `week_rollover`; one
that rule refuses is kept as sent with `date_known=False` (counted `implausible_date`).
Left as sent, such a position was 19.6 years old to dispatch (stale, out of the transit feeds)
and never set the node's clock.

Every line is bounded (`max_line`) and untrusted: a line that is not a JSON object, or a TPV
with values of the wrong type or out of range, is counted (`bad_json`, `too_long`,
`malformed`) and skipped; gpsd ERROR reports are counted as `gpsd_error` and logged.

A lost connection raises `DriverError`, and the supervisor reconnects with backoff; so does
a connection silent for `silence_s` (gpsd reports every cycle while a receiver is attached).
Ready: on the first TPV, which is when the receiver behind gpsd answers.
"""

import asyncio
import json
import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from pydantic import Field

from core.driver import DriverContext, DriverOptions, Opens
from core.errors import DriverError
from core.events import Fix, FixMode
from drivers.gps.dating import ROLLOVER_FLOOR, Dating

GPS_EPOCH = date(1980, 1, 6)
"""Week 0 of GPS time: a date before it is no week rollover, whatever else it is."""

WATCH = b'?WATCH={"enable":true,"json":true}\n'
READ_SIZE = 65536
# gpsd TPV "status" to GGA fix quality: DGPS, RTK fixed/float, dead reckoning, simulated…
# STATUS_GNSSDR (6) is GNSS and dead reckoning combined: a measured fix, quality 1 as u-blox
# gives it in NMEA; only STATUS_DR (5), without satellites, is GGA's 6, estimated.
_STATUS_QUALITY = {2: 2, 3: 4, 4: 5, 5: 6, 6: 1, 7: 7, 8: 8, 9: 3}


class GpsdOptions(DriverOptions):
    host: str = Field(default="127.0.0.1", min_length=1, description="gpsd host")
    port: int = Field(default=2947, ge=1, le=65535, description="gpsd TCP port")
    device: str | None = Field(
        default=None, description="only reports from this device path (gpsd may serve several)"
    )
    max_line: int = Field(
        default=16384, ge=1024, le=1_048_576, description="longer JSON lines are dropped"
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    silence_s: float = Field(
        default=10.0, gt=0, le=3600, description="nothing from gpsd this long: reconnect"
    )


class Malformed(Exception):
    """A report with a field of the wrong type or out of range."""


def _number(value: Any) -> float | None:
    """A finite JSON number, else None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # a JSON integer of hundreds of digits: no float holds it
        return None
    return number if math.isfinite(number) else None


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise Malformed(f"bad time {value!r:.60}")
    try:
        when = datetime.fromisoformat(value)
        # a zone offset at either end of the calendar (9999-12-31T23:59:59-05:00) has no
        # UTC datetime: OverflowError, which would have ended the connection, not one report
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise Malformed(f"bad time {value!r}") from None


class GpsdReports:
    """gpsd JSON lines to Fixes: the protocol half of the driver, without the socket."""

    def __init__(
        self,
        device: str | None = None,
        *,
        count: Callable[[str, int], None] = lambda key, n: None,
        now: Callable[[], datetime] | None = None,
        synced: Callable[[], bool | None] | None = None,
    ) -> None:
        """`count(key, n)`: the driver's counters; `now`, `synced`: the system clock and
        whether it is synchronised (the rollover rule's bounds; default the kernel's)."""
        self.device = device
        self.dating = Dating(now, count, synced)
        self.satellites: int | None = None
        self.hdop: float | None = None
        self.tpvs = 0  # TPV reports taken: the receiver behind gpsd is talking

    def handle(self, msg: dict[str, Any], at: float | None = None) -> Fix | None:
        """One decoded report; raises Malformed for a TPV or SKY to count and skip. `at`:
        when it arrived (monotonic s), the fix's `received`."""
        kind = msg.get("class")
        if kind not in ("TPV", "SKY"):
            return None
        if self.device is not None and msg.get("device") != self.device:
            return None
        if kind == "SKY":
            self._sky(msg)
            return None
        fix = self._tpv(msg, at)
        self.tpvs += 1
        return fix

    def _sky(self, msg: dict[str, Any]) -> None:
        sats = msg.get("satellites")
        used = msg.get("uSat")
        if isinstance(sats, list):
            self.satellites = sum(1 for s in sats if isinstance(s, dict) and s.get("used") is True)
        elif isinstance(used, int) and not isinstance(used, bool) and 0 <= used < 1000:
            self.satellites = used
        hdop = _number(msg.get("hdop"))
        if hdop is not None and 0 <= hdop <= 100:
            self.hdop = hdop

    def _tpv(self, msg: dict[str, Any], at: float | None) -> Fix:
        mode = msg.get("mode", 0)
        if not isinstance(mode, int) or isinstance(mode, bool) or mode not in (0, 1, 2, 3):
            raise Malformed(f"bad TPV mode {mode!r:.40}")
        when = _time(msg.get("time"))
        if mode < 2 or when is None:
            return Fix(
                fix_time=when or datetime.now(UTC),
                lat=0.0,
                lon=0.0,
                mode=FixMode.NONE,
                quality=0,
                satellites=self.satellites,
                hdop=self.hdop,
                received=at,
            )
        lat, lon = _number(msg.get("lat")), _number(msg.get("lon"))
        if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise Malformed("TPV with a fix but no valid lat/lon")
        speed = _number(msg.get("speed"))
        track = _number(msg.get("track"))
        alt = _number(msg.get("altMSL"))
        status = msg.get("status")
        when, known = self._unrolled(when)
        return Fix(
            fix_time=when,
            lat=lat,
            lon=lon,
            alt=alt if alt is not None else _number(msg.get("alt")),
            speed=speed if speed is not None and 0 <= speed < 10_000 else None,
            course=track % 360 if track is not None and 0 <= track <= 360 else None,
            mode=FixMode.THREE_D if mode == 3 else FixMode.TWO_D,
            quality=_STATUS_QUALITY.get(status, 1) if isinstance(status, int) else 1,
            satellites=self.satellites,
            hdop=self.hdop,
            date_known=known,
            received=at,
        )

    def _unrolled(self, when: datetime) -> tuple[datetime, bool]:
        """(fix time, date known): a date of a week-number rollover moved past it (the
        module docstring), one the rule refuses as sent and not known."""
        day = when.date()
        if not GPS_EPOCH <= day < ROLLOVER_FLOOR:
            return when, True
        unrolled = self.dating.unroll(day)
        if unrolled is None:
            return when, False
        moved, known = unrolled
        return when + (moved - day), known


class GpsdGps:
    Options: ClassVar[type[DriverOptions]] = GpsdOptions

    @classmethod
    def opens(cls, options: GpsdOptions) -> Opens:
        """A TCP service, no device of its own: the probe says whether gpsd answers."""
        return Opens(
            silence="gpsd accepted the connection but reported nothing: does `gpspipe -w` "
            "show the receiver? (gpsd must be started with the device, e.g. DEVICES=/dev/gps0)"
        )

    def __init__(self, options: GpsdOptions) -> None:
        self.options = options

    @property
    def where(self) -> str:
        return f"gpsd at {self.options.host}:{self.options.port}"

    async def run(self, ctx: DriverContext) -> None:
        o = self.options
        try:
            async with asyncio.timeout(o.connect_timeout_s):
                reader, writer = await asyncio.open_connection(o.host, o.port)
        except (OSError, TimeoutError) as exc:
            raise DriverError(
                f"cannot reach {self.where} ({exc or 'timed out'}): is gpsd running? "
                "(systemctl status gpsd.socket; it must listen on this address)"
            ) from exc
        try:
            writer.write(WATCH)
            await writer.drain()
            await self._follow(reader, ctx)
        finally:
            writer.close()

    async def _follow(self, reader: asyncio.StreamReader, ctx: DriverContext) -> None:
        o = self.options
        reports = GpsdReports(o.device, count=ctx.count)
        loop = asyncio.get_running_loop()
        rest = b""
        discarding = False  # inside an over-long line, until its end
        while True:
            try:
                async with asyncio.timeout(o.silence_s):
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                raise DriverError(
                    f"{self.where} sent nothing for {o.silence_s:g} s: is a receiver "
                    "attached to gpsd? (gpspipe -w shows what gpsd sees)"
                ) from None
            if not data:
                raise DriverError(f"{self.where} closed the connection")
            at = loop.time()
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            if discarding and lines:
                lines[0], discarding = b"", False  # the tail of a dropped line
            if len(rest) > o.max_line:
                if not discarding:
                    ctx.count("too_long")
                rest, discarding = b"", True
            for line in lines:
                if len(line) > o.max_line:
                    ctx.count("too_long")
                elif line.strip():
                    self._line(line, reports, ctx, at)

    def _line(self, line: bytes, reports: GpsdReports, ctx: DriverContext, at: float) -> None:
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
            ctx.count("bad_json")
            return
        if not isinstance(msg, dict):
            ctx.count("bad_json")
            return
        if msg.get("class") == "ERROR":
            ctx.count("gpsd_error")
            ctx.log.warning("%s reports an error: %.200s", self.where, msg.get("message"))
            return
        seen = reports.tpvs
        try:
            fix = reports.handle(msg, at)
        except Malformed as exc:
            ctx.count("malformed")
            ctx.log.debug("skipped a gpsd report: %s", exc)
            return
        if reports.tpvs == 1 and seen == 0:
            ctx.ready()
        if fix is not None:
            ctx.emit(fix)
