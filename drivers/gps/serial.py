"""`gps.nmea-serial`: an NMEA receiver on a serial port (UART, USB CDC-ACM, USB-serial).

Reading: pyserial opens and configures the port (raw mode, baud rate, an exclusive lock so
gpsd or a second daemon cannot share it silently), then the event loop watches its file
descriptor (`loop.add_reader`) — no thread, no executor, no polling timer while the receiver
is quiet. After the first bytes of a burst it waits `batch_s` and reads everything at once:
a UART delivers a 1 Hz epoch in dozens of small chunks, and one wake-up per burst instead
of one per chunk is what keeps a Pi Zero idle. Parsing (drivers.gps.nmea) costs a few µs a
sentence, so it runs on the loop.

Unplug: a vanished device makes the descriptor readable with end-of-file or EIO; the driver
then emits the epoch it was reading (the last position there is) and raises `DriverError`,
and the supervisor reopens it with backoff until the port is back (opening a missing port
raises with what to check). A port that stays open but says nothing
valid for `silence_s` (receiver off, wrong baud rate) raises too, so health shows it.

Ready: on the first sentence with a good checksum, not at open — an open port at the wrong
baud rate is not a working receiver.

Epochs close on time (drivers.gps.epochs): every read is stamped with the loop's monotonic
clock, and a timer fires when the open epoch's quiet deadline passes, so the last fix
before the receiver goes quiet is emitted a fraction of its period after it arrived. Any
byte read counts as the receiver talking; bytes that never pause but hold no valid
sentence end in the `silence_s` error, and the epoch they held open is emitted first.
"""

import asyncio
import contextlib
import errno
import os
from typing import ClassVar, Literal

import serial
from pydantic import Field

from core.driver import Device, DriverContext, DriverOptions, Opens
from core.errors import DriverError
from core.events import Fix
from drivers.gps.decoder import NmeaDecoder
from drivers.gps.nmea import DEFAULT_MAX_LINE, NMEA_MAX_LINE

READ_SIZE = 65536
PLUG = "unplugged? it is reopened when it is back: check the cable and connector"


class NmeaSerialOptions(DriverOptions):
    port: str = Field(
        min_length=1, description="serial device; prefer a udev symlink such as /dev/gps0"
    )
    baud: Literal[4800, 9600, 19200, 38400, 57600, 115200] = Field(
        default=9600, description="the receiver's output rate"
    )
    max_line: int = Field(
        default=DEFAULT_MAX_LINE,
        ge=NMEA_MAX_LINE,
        le=4096,
        description="longer lines are dropped and counted as too_long (NMEA says 82)",
    )
    complete_on: tuple[Literal["GGA", "RMC", "VTG", "GSA", "GNS", "GLL"], ...] | None = Field(
        default=None,
        description="no longer used (kept so older configs still load): epochs close on "
        "the next epoch's time or a quiet spell, whatever sentences the receiver sends",
    )
    silence_s: float = Field(
        default=10.0, gt=0, le=3600, description="no valid sentence this long: reopen the port"
    )
    batch_s: float = Field(
        default=0.02, ge=0, le=0.5, description="delay from data to read, to read bursts whole"
    )


def _open_error(port: str, exc: serial.SerialException) -> DriverError:
    """Say what to check, not just the errno."""
    code = exc.errno
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        advice = (
            "it does not exist: check the GPS cable and the udev rule that names it "
            "(ls -l /dev/serial/by-id/)"
        )
    elif code == errno.EACCES:
        advice = "permission denied: add the user running edged to the 'dialout' group"
    elif code in (errno.EAGAIN, errno.EBUSY):
        advice = (
            "it is in use by another program (gpsd? ModemManager?): stop it, "
            "or use the gps.gpsd driver to share the receiver"
        )
    else:
        advice = str(exc)
    return DriverError(f"cannot open GPS serial port {port}: {advice}")


class NmeaSerialGps:
    Options: ClassVar[type[DriverOptions]] = NmeaSerialOptions

    @classmethod
    def opens(cls, options: NmeaSerialOptions) -> Opens:
        return Opens(
            devices=(Device.at(options.port, "port"),),
            silence="the port opens but no valid NMEA sentence came: check the baud rate "
            "(receivers use 4800, 9600, 38400 or 115200), the wiring (receiver TX to Pi RX) "
            "and that the receiver has power",
        )

    def __init__(self, options: NmeaSerialOptions) -> None:
        self.options = options

    def _open(self) -> serial.Serial:
        o = self.options
        try:
            return serial.Serial(o.port, o.baud, timeout=0, exclusive=True)
        except serial.SerialException as exc:
            raise _open_error(o.port, exc) from exc
        except (OSError, ValueError) as exc:
            raise DriverError(f"cannot open GPS serial port {o.port}: {exc}") from exc

    async def run(self, ctx: DriverContext) -> None:
        if self.options.complete_on is not None:
            ctx.log.warning(
                "complete_on is no longer used and can be removed: an epoch is emitted on "
                "the next epoch's time or when the receiver goes quiet"
            )
        port = self._open()
        try:
            await self._follow(port.fileno(), ctx)
        finally:
            with contextlib.suppress(OSError, serial.SerialException):
                port.close()  # may fail on a vanished device; the first error is the one

    async def _follow(self, fd: int, ctx: DriverContext) -> None:
        o = self.options
        loop = asyncio.get_running_loop()
        decoder = NmeaDecoder(max_line=o.max_line, count=ctx.count)
        failed: asyncio.Future[None] = loop.create_future()
        last_good = loop.time()
        talking = False  # a good sentence came: ready was called
        timer: asyncio.TimerHandle | None = None
        quiet: asyncio.TimerHandle | None = None  # closes the open epoch on its deadline

        def fail(exc: BaseException) -> None:
            loop.remove_reader(fd)
            if not failed.done():
                failed.set_exception(exc)

        def emit(fixes: list[Fix]) -> bool:
            try:
                for fix in fixes:
                    ctx.emit(fix)
            except Exception as exc:  # from a service behind emit: fail visibly
                fail(exc)
                return False
            return True

        def watch_quiet() -> None:
            nonlocal quiet
            deadline = decoder.deadline()
            if quiet is not None:
                if deadline is not None and quiet.when() == deadline:
                    return
                quiet.cancel()
                quiet = None
            if deadline is not None:
                quiet = loop.call_at(deadline, on_quiet)

        def on_quiet() -> None:
            nonlocal quiet
            quiet = None
            if emit(decoder.poll(loop.time())):
                watch_quiet()

        def lost(why: str) -> None:
            # the epoch read before the port went is the last position there is (a cable
            # pulled, a receiver stolen): emitted as a quiet spell would, not dropped
            if (last := decoder.flush()) is not None and not emit([last]):
                return
            fail(DriverError(f"GPS serial port {o.port} lost ({why}); {PLUG}"))

        def read() -> None:
            nonlocal last_good, talking, timer
            timer = None
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                data = None
            except OSError as exc:
                lost(exc.strerror or str(exc))
                return
            if data == b"":
                lost("end of file")
                return
            if data:
                seen = decoder.sentences
                if not emit(decoder.feed(data, loop.time())):
                    return
                watch_quiet()
                if decoder.sentences != seen:
                    last_good = loop.time()
                    if not talking:
                        talking = True
                        ctx.ready()
            if o.batch_s:
                loop.add_reader(fd, readable)

        def readable() -> None:
            nonlocal timer
            if o.batch_s:
                loop.remove_reader(fd)
                timer = loop.call_later(o.batch_s, read)
            else:
                read()

        loop.add_reader(fd, readable)
        try:
            while True:
                wait = last_good + o.silence_s - loop.time()
                if wait <= 0:
                    # bytes that never pause (noise, binary) held the open epoch: its fix
                    # still goes out before the port is reopened
                    if (last := decoder.flush()) is not None:
                        emit([last])
                    raise DriverError(
                        f"no valid NMEA sentence from {o.port} at {o.baud} baud for "
                        f"{o.silence_s:g} s: check the baud rate (receivers use 4800, 9600, "
                        "38400 or 115200) and that the receiver is powered"
                    )
                await asyncio.wait([failed], timeout=wait)
                if failed.done():
                    failed.result()
        finally:
            loop.remove_reader(fd)
            if timer is not None:
                timer.cancel()
            if quiet is not None:
                quiet.cancel()
            if failed.done():
                failed.exception()  # retrieved: no "never retrieved" warning on cancel
