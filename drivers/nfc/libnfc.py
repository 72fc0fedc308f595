"""`nfc.libnfc`: an NFC reader through libnfc (PN532 on UART/I2C/SPI, ACR122U, PN533 USB…).

Binding: libnfc itself through drivers.nfc.binding (ctypes prototypes of our own for the
calls made here), not pynfc: importing `pynfc.nfc` loads libfreefare too and builds every
binding of both libraries (~0.6 MB of the node's memory), and its `Nfc.poll()` generator has
no timeout, yields only the cards libfreefare knows and yields a held card again on every
poll. libnfc is loaded when a reader opens: the options validate on a machine without it,
and a node without it gets a `ConfigError` (not retried) that says what to install.
The target a poll fills is read through drivers.nfc.abi's structures (pynfc's were sized for
x86-64 only); the first opening in a process checks them against libnfc itself, and a
libnfc that disagrees is a `ConfigError` too: no card is read through a wrong layout.

Polling runs in one thread per reader, off the event loop. The thread owns the libnfc
context and device from `nfc_init` to `nfc_exit`, on every exit path. Each poll is one
`nfc_initiator_select_passive_target` (InListPassiveTarget on a PN532) with
NP_INFINITE_SELECT off, so the chip tries a few times and answers "no card" instead of
waiting for one, and libnfc bounds the call (300 ms on pn532_uart). NP_AUTO_ISO14443_4 is
off: the UID needs no RATS, and a phone held to the reader does not wake its wallet.

Taps follow drivers.nfc.presence: a held card is one tap (`repeat_held_s` to repeat), a
card unseen for `release_s` is off the reader, so one missed poll is not a second tap; a
different card taps at once. Which cards are on the reader outlives a reopen (it is kept
per reader for the process, not per session): a card lying on the reader is not a new tap
each time the reader recovers from line noise, a stall or an unplug. A new UID must be read
`confirm_reads` times (the extra reads follow at once, not a poll later, and ask the chip
for that UID alone): libnfc decodes whatever a garbled but well-framed answer holds as a
target — random UIDs, or the previous answer again when the answer is short — and a read
asking for that UID by name never agrees with it. Asking by name is also what lets two
cards held together tap: with one target per poll, anticollision lists them in turn (A, B,
A, B), so reads "in a row" would never agree, while the card named answers its own extra
read. UIDs other than 4, 7 or 10 bytes are counted (`bad_uid`) and dropped. Such bad reads
are not "no card" either: only a clean answer counts as evidence that a card left.

Failure: `max_errors` failed polls in a row (I/O error, a frame that fails its checksum, no
answer within libnfc's timeout, the device gone) raise `DriverError`, and the supervisor
reopens the reader with backoff; opening says what to check (missing port, permissions,
wiring). A serial port is locked as pyserial's `exclusive` does, so a second driver given
the same port fails clearly instead of garbling this one's frames (libnfc's own "claimed"
mark does not survive on Linux). A libnfc call that does not return for `stall_s` (a
driver without its own timeout) is aborted and raises too.

Stop: on cancel the thread is told to stop, the call in progress is aborted
(`nfc_abort_command`: a pn532_uart read returns at once), and `run` waits at most 0.5 s for
the thread to close the reader; should libnfc take longer, the thread still closes it when
the call returns, and a reopen meanwhile finds the port locked and backs off.

Counters (`driver.{name}.…`): opened, taps, bad_uid, unconfirmed, poll_error, stall.
"""

import asyncio
import contextlib
import ctypes
import fcntl
import functools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import Field, field_validator, model_validator

from core.driver import Device, DriverContext, DriverOptions, Opens
from core.errors import DriverError
from core.events import Tap
from drivers.nfc import abi, binding, quiet_libnfc
from drivers.nfc.presence import Presence
from drivers.nfc.uid import UID_LENGTHS

STOP_WAIT_S = 0.5
TARGET_BUFFER = 1024  # bytes behind each nfc_target: room should libnfc's struct ever grow
LIBNFC_DRIVERS = (
    "pn532_uart",
    "pn532_i2c",
    "pn532_spi",
    "pn53x_usb",
    "acr122_usb",
    "acr122_pcsc",
    "acr122s",
    "arygon",
    "pcsc",
    "pn71xx",
)
NEEDS_PORT = ("pn532_uart", "pn532_i2c", "pn532_spi", "acr122s", "arygon")
SERIAL = ("pn532_uart", "acr122s", "arygon")
USB = ("pn53x_usb", "acr122_usb")
USB_NODES = "/dev/bus/usb"
"""Where a USB reader's device node appears when it is plugged in (or back after a reset)."""
SERIAL_SPEEDS = (9600, 19200, 38400, 57600, 115200, 230400, 460800)

quiet_libnfc()  # at import, before this driver's threads: never a setenv once they run


class LibnfcOptions(DriverOptions):
    connstring: str = Field(
        min_length=1,
        max_length=1023,
        description="libnfc device, as in libnfc.conf: pn532_uart:/dev/ttyS0 (optionally "
        ":115200), pn532_i2c:/dev/i2c-1, pn532_spi:/dev/spidev0.0, acr122_usb, pn53x_usb",
    )
    poll_interval_s: float = Field(
        default=0.05,
        ge=0.005,
        le=1.0,
        description="time between polls: a card is read at most this long after it is put on",
    )
    release_s: float = Field(
        default=0.3,
        gt=0,
        le=10,
        description="a card unseen this long is off the reader (shorter gaps are read "
        "glitches of the same presentation); at least twice poll_interval_s",
    )
    repeat_held_s: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="a card held this long taps again; unset: a held card is one tap",
    )
    confirm_reads: int = Field(
        default=2,
        ge=1,
        le=5,
        description="reads that must agree before a new card taps, the extra ones asking "
        "the chip for that UID alone (2 rejects a garbled answer that still decodes as a "
        "UID; each extra read costs one poll's time)",
    )
    max_errors: int = Field(
        default=3,
        ge=1,
        le=100,
        description="failed polls in a row (I/O error, bad frame, no answer) before the "
        "reader is reopened",
    )
    stall_s: float = Field(
        default=5.0,
        ge=0.5,
        le=60,
        description="a libnfc call that has not returned this long is aborted and the "
        "reader reopened",
    )

    @field_validator("connstring")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        driver, _, rest = value.partition(":")
        if driver not in LIBNFC_DRIVERS:
            raise ValueError(
                f"unknown libnfc driver {driver!r}: use one of {', '.join(LIBNFC_DRIVERS)}, "
                "e.g. 'pn532_uart:/dev/ttyS0'"
            )
        port, _, speed = rest.partition(":")
        if driver in NEEDS_PORT and not port:
            raise ValueError(f"{driver} needs the device: e.g. '{driver}:{_example(driver)}'")
        if driver in SERIAL and speed and (not speed.isdigit() or int(speed) not in SERIAL_SPEEDS):
            speeds = ", ".join(map(str, SERIAL_SPEEDS))
            raise ValueError(f"serial speed {speed!r} is not one of {speeds}")
        return value

    @model_validator(mode="after")
    def _release_spans_a_missed_poll(self) -> Self:
        if self.release_s < 2 * self.poll_interval_s:
            raise ValueError(
                f"release_s ({self.release_s:g}) must be at least twice poll_interval_s "
                f"({self.poll_interval_s:g}), or one missed poll would be a second tap"
            )
        return self


def _example(driver: str) -> str:
    return {"pn532_i2c": "/dev/i2c-1", "pn532_spi": "/dev/spidev0.0"}.get(driver, "/dev/ttyS0")


@functools.cache
def _layout_checked(state_dir: Path | None) -> None:
    """`abi.check()` once per process: the answer cannot change while it runs (a raise is
    not cached, so an overloaded machine's timeout is tried again); across starts, by the
    record it keeps in the node's state directory."""
    abi.check(abi.NATIVE, remember_in=state_dir)


def _lock_port(port: str) -> int | None:
    """An advisory lock on a serial port, as pyserial's `exclusive` takes (gps.nmea-serial).

    libnfc takes none, and its own "claimed" mark does not survive on Linux, so two programs
    could poll one reader and garble each other's frames; this catches the ones that lock —
    a second edged driver given the same port, gpsd. The descriptor is held until close.
    """
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return None  # libnfc's open fails next, and says why
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise DriverError(
            f"cannot open NFC reader on {port}: it is in use by another program that locked "
            "it (a second edged driver given the same port? gpsd? this reader still closing?): "
            "give each device its own port"
        ) from None
    return fd


def _open_error(connstring: str) -> DriverError:
    """libnfc says only "could not open": say what to check for this kind of reader."""
    driver, _, rest = connstring.partition(":")
    port = rest.partition(":")[0]
    if driver in NEEDS_PORT and not os.path.exists(port):
        what = {
            "pn532_i2c": "enable I2C (raspi-config, dtparam=i2c_arm=on) and check the bus number",
            "pn532_spi": "enable SPI (raspi-config, dtparam=spi=on) and check the chip select",
        }.get(
            driver,
            "check the reader's cable and the udev rule that names it "
            "(ls -l /dev/serial/by-id/); on a Pi's own UART enable the serial port and "
            "disable the serial console (raspi-config)",
        )
        advice = f"{port} does not exist: {what}"
    elif driver in NEEDS_PORT and not os.access(port, os.R_OK | os.W_OK):
        group = {"pn532_i2c": "i2c", "pn532_spi": "spi"}.get(driver, "dialout")
        advice = f"permission denied on {port}: add the user running edged to the '{group}' group"
    elif driver in SERIAL:
        advice = (
            "nothing answered as a PN532: check TX/RX are crossed, the module's interface "
            "switches are set to HSU (UART), its 3.3/5 V power, the baud rate, and that no "
            "other program (the serial console, nfc-poll) uses the port"
        )
    elif driver == "pn532_i2c":
        advice = (
            "no PN532 answered on the bus: check SDA/SCL, the module's switches set to I2C, "
            "and that `i2cdetect -y 1` shows 0x24"
        )
    elif driver in ("pn53x_usb", "acr122_usb"):
        advice = (
            "no such USB reader: check it is plugged in (lsusb), that the kernel's pn533 and "
            "nfc modules are blacklisted (they claim the reader first), and the udev rule"
        )
    else:
        advice = "check the connection string and that the reader is connected"
    return DriverError(f"cannot open NFC reader {connstring}: {advice}")


_ON_READERS: dict[tuple[str, str], Presence] = {}
_ON_READERS_LOCK = threading.Lock()


def _on_reader(name: str, options: LibnfcOptions) -> Presence:
    """Which cards are on reader `name`: kept for the process, across the reader's reopens.

    The supervisor builds the driver afresh at each start, so the record lives here, keyed
    by the reader and its device; were it rebuilt empty at each reopen, a card left lying
    on the reader would tap again every time the reader recovered from line noise or an
    unplug. The rule stays the one of drivers.nfc.presence, on the monotonic clock: a card
    read again at the first completed poll after the reopen is the same presentation; one
    gone by then is off at once (release_s has passed), so presented again it taps.
    """
    with _ON_READERS_LOCK:
        presence = _ON_READERS.get((name, options.connstring))
        if presence is None:
            presence = _ON_READERS[name, options.connstring] = Presence(options.release_s)
        presence.release_s, presence.repeat_s = options.release_s, options.repeat_held_s
        return presence


class LibnfcReader:
    Options: ClassVar[type[DriverOptions]] = LibnfcOptions

    @classmethod
    def opens(cls, options: LibnfcOptions) -> Opens:
        """The device in the connection string (pn532_uart:/dev/ttyS0); none for a USB
        reader or libnfc's own autodetection."""
        driver, _, rest = options.connstring.partition(":")
        path = rest.partition(":")[0]
        return Opens(
            devices=(Device.at(path, "connstring"),) if path.startswith("/") else (),
            silence="the reader did not answer: check its wiring, its interface switches "
            "(PN532 boards select UART/I2C/SPI with jumpers) and `nfc-list`",
            plugged_in=USB_NODES if driver in USB else "",
        )

    def __init__(self, options: LibnfcOptions) -> None:
        self.options = options

    async def run(self, ctx: DriverContext) -> None:
        session = _Session(self.options, ctx, asyncio.get_running_loop())
        session.start()
        try:
            await session.watch()
        finally:
            await session.stop()


class _Session:
    """One opening of the reader: the polling thread and what the event loop knows of it."""

    def __init__(
        self, options: LibnfcOptions, ctx: DriverContext, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.o = options
        self.ctx = ctx
        self.loop = loop
        self.done: asyncio.Future[None] = loop.create_future()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the device's lifetime vs. an abort from the loop
        self._nfc: Any = None
        self._context: Any = None
        self._device: Any = None
        self._port_lock: int | None = None
        self._call_since: float | None = None  # when the libnfc call in progress started
        self._thread = threading.Thread(target=self._main, name=f"nfc-{ctx.name}", daemon=True)

    # -- event loop side ------------------------------------------------------------------

    def start(self) -> None:
        # LIBNFC_LOG_LEVEL is in place already (drivers.nfc.quiet_libnfc, at process start
        # and at this module's import): setting it here, with the node's threads running,
        # raced their getenv (glibc's setenv is not thread-safe)
        self._thread.start()

    async def watch(self) -> None:
        """Until the thread fails (its error is raised here) or a libnfc call stalls."""
        stall = self.o.stall_s
        while True:
            since = self._call_since
            wait = stall if since is None else max(0.05, since + stall - time.monotonic())
            await asyncio.wait([self.done], timeout=wait)
            if self.done.done():
                self.done.result()
                raise DriverError(f"NFC reader {self.o.connstring}: polling ended unexpectedly")
            since = self._call_since
            if since is not None and time.monotonic() - since >= stall:
                self.ctx.count("stall")
                raise DriverError(
                    f"NFC reader {self.o.connstring}: a libnfc call has not returned for "
                    f"{stall:g} s (reader hung or bus stuck): check its power and wiring; "
                    "it is reopened"
                )

    async def stop(self) -> None:
        """Stop the thread; wait for it to close the reader, but never more than 0.5 s."""
        self._stop.set()
        self._abort()
        if not self.done.done():
            await asyncio.wait([self.done], timeout=STOP_WAIT_S)
        if self.done.done():
            self.done.exception()  # retrieved: no "never retrieved" warning
        else:
            self.ctx.log.warning("NFC reader %s still closing in the background", self.o.connstring)

    def _abort(self) -> None:
        with self._lock:
            if self._device is not None and self._call_since is not None:
                self._nfc.nfc_abort_command(self._device)

    # -- polling thread -----------------------------------------------------------------

    def _later(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn` on the event loop (counters, ready); nothing if the loop has closed."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(fn, *args)

    def _finish(self, error: BaseException | None) -> None:
        if self.done.done():
            return
        if error is None or self._stop.is_set():
            # once stopping, nobody may be waiting any more: an error set now would only be
            # logged as "never retrieved" whenever the future is collected
            if error is not None:
                self.ctx.log.debug("NFC reader %s closed after: %s", self.o.connstring, error)
            self.done.set_result(None)
        else:
            self.done.set_exception(error)

    def _main(self) -> None:
        error: Exception | None = None
        try:
            self._open()
            self._poll()
        except Exception as exc:
            error = exc
        finally:
            self._close()
            self._later(self._finish, error)

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        self._call_since = time.monotonic()
        try:
            return fn(*args)
        finally:
            self._call_since = None

    def _strerror(self) -> str:
        with contextlib.suppress(Exception):
            text: bytes | None = self._nfc.nfc_strerror(self._device)
            if text is not None:
                return text.decode(errors="replace")
        return "unknown error"

    def _open(self) -> None:
        nfc = self._nfc = binding.libnfc()
        _layout_checked(self.ctx.state_dir)
        cs = self.o.connstring
        context = ctypes.c_void_p()
        nfc.nfc_init(ctypes.byref(context))
        if not context:
            raise DriverError("libnfc could not start (nfc_init failed: out of memory?)")
        self._context = context
        driver, _, rest = cs.partition(":")
        if driver in SERIAL:
            self._port_lock = _lock_port(rest.partition(":")[0])
        device = self._timed(nfc.nfc_open, context, binding.connstring(cs))
        if not device:
            raise _open_error(cs)
        with self._lock:
            self._device = device
        if self._stop.is_set():
            # stopped (a stall) while nfc_open ran, which has no device to abort yet: close,
            # never a late `ready` (health read `running` during the supervisor's backoff)
            return
        if self._timed(nfc.nfc_initiator_init, device) < 0:
            raise DriverError(f"NFC reader {cs} refused reader mode: {self._strerror()}")
        for prop in (binding.NP_INFINITE_SELECT, binding.NP_AUTO_ISO14443_4):
            if self._timed(nfc.nfc_device_set_property_bool, device, prop, False) < 0:
                raise DriverError(f"NFC reader {cs} refused its settings: {self._strerror()}")
        if self._stop.is_set():  # stopped during the settings: aborted, not open
            return
        name = (nfc.nfc_device_get_name(device) or b"?").decode(errors="replace")
        self.ctx.log.info("NFC reader open: %s", name)
        self._later(self.ctx.count, "opened")
        self._later(self.ctx.ready)

    def _close(self) -> None:
        """Free libnfc's device and context; closing a PN532 also turns its field off."""
        with self._lock:
            device, self._device = self._device, None
        nfc, context, self._context = self._nfc, self._context, None
        if device:
            nfc.nfc_close(device)
        if context:
            nfc.nfc_exit(context)
        lock, self._port_lock = self._port_lock, None
        if lock is not None:
            os.close(lock)

    def _poll(self) -> None:
        o, nfc = self.o, self._nfc
        presence = _on_reader(self.ctx.name, o)
        buffer = ctypes.create_string_buffer(TARGET_BUFFER)
        target = abi.NATIVE.Target.from_buffer(buffer)
        modulation = abi.NATIVE.Modulation(abi.NMT_ISO14443A, abi.NBR_106)
        select = abi.select_passive_target(nfc)

        def read(only: bytes | None = None) -> tuple[int, bytes | None]:
            """One poll: libnfc's result (< 0 failed, 0 no card, > 0 a target) and its UID
            if it is a good one; with `only`, the chip selects that UID alone (the card
            answers whatever other card anticollision would have listed first)."""
            ctypes.memset(buffer, 0, TARGET_BUFFER)  # a short answer may leave it unwritten
            init = ctypes.create_string_buffer(only, len(only)) if only else None
            res: int = self._timed(
                select,
                self._device,
                modulation,
                init,
                len(only) if only else 0,
                ctypes.byref(target),
            )
            if res <= 0:
                return res, None
            info = target.nti.nai
            if target.nm.nmt != abi.NMT_ISO14443A or info.szUidLen not in UID_LENGTHS:
                self._later(self.ctx.count, "bad_uid")
                self.ctx.log.debug("NFC reader read a UID of %d bytes: dropped", info.szUidLen)
                return res, None
            return res, bytes(info.abtUid[: info.szUidLen])

        failures = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            res, uid = read()
            if self._stop.is_set():
                return
            if res < 0:
                failures += 1
                self._later(self.ctx.count, "poll_error")
                level = self.ctx.log.warning if failures == 1 else self.ctx.log.debug
                level("NFC reader %s poll failed: %s", o.connstring, self._strerror())
                if failures >= o.max_errors:
                    raise DriverError(
                        f"NFC reader {o.connstring} stopped answering ({failures} polls failed "
                        f"in a row, last: {self._strerror()}): check its cable and power; "
                        "it is reopened"
                    )
            else:
                failures = 0
                # a poll counts (for taps, and as evidence a card left) when it saw no card,
                # a card on the reader, or a new one read again alike; a bad read does not
                seen: list[bytes] | None = [] if res == 0 else None
                if uid is not None:
                    # the extra reads ask for this UID alone: a second card in the field
                    # (anticollision lists them in turn) does not answer them, garbage does
                    # not come back as the same UID. They are made inside all(), deeper in
                    # the C stack than the poll: libnfc decodes a short answer from the
                    # bytes its previous answer left on the stack, and there those are the
                    # previous extra read's, not this poll's (the garbage tests hold it)
                    if uid in presence or all(
                        read(uid)[1] == uid for _ in range(o.confirm_reads - 1)
                    ):
                        seen = [uid]
                    else:
                        self._later(self.ctx.count, "unconfirmed")
                if seen is not None:
                    for new in presence.update(seen, time.monotonic()):
                        self._tap(new)
            next_at += o.poll_interval_s
            now = time.monotonic()
            if next_at < now:
                next_at = now  # a slow poll: start again from now, no burst to catch up
            self._stop.wait(next_at - now)

    def _tap(self, uid: bytes) -> None:
        if self._stop.is_set():
            return
        self._later(self.ctx.count, "taps")
        with contextlib.suppress(RuntimeError):
            self.ctx.emit_threadsafe(Tap(uid=uid, reader=self.ctx.name, ts=time.monotonic()))
