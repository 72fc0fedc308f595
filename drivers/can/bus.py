"""`can.bus`: a vehicle CAN bus (J1939 / FMS) read through python-can, never written to.

`socketcan` on a Pi with an MCP2515 HAT, `slcan` for USB adapters, anything python-can
supports. The node is a passive listener: it never transmits, and asks the adapter for
listen-only mode where python-can can (slcan `L`, cantact monitor). SocketCAN has no
per-socket listen-only: set it on the interface,
`ip link set can0 up type can bitrate 250000 listen-only on restart-ms 100`
(listen-only also stops the controller from acknowledging frames, so only use it on a bus
that has other receivers, which a vehicle bus always has).

Where the interface filters in the kernel or the adapter (socketcan, and others that
implement python-can's hardware filters), only the PGNs in use reach Python; elsewhere
the pipeline drops other PGNs after a dict lookup, which is cheaper than python-can's
own software filter loop.

`slcan` goes through BufferedSlcanBus (drivers/can/slcan.py): python-can's own reader
takes a system call per byte; ours reads the port in chunks and applies the filters to
each line before it builds a `can.Message`. SocketCAN gets a 1 MiB receive buffer
(`receive_buffer_bytes`) so a process stalled for a moment loses nothing.

Failure handling: the adapter unplugged or the interface down raises, and the
supervisor reopens with backoff; a bus-off with no frame within `busoff_reopen_s` does
the same. Error frames, bus-off and controller overflows are counted.
"""

import asyncio
import errno
import logging
import socket
from typing import Any

import can
from pydantic import Field, field_validator, model_validator

from core.driver import Device, DriverContext, Opens
from core.errors import ConfigError, DriverError
from drivers.can import table
from drivers.can.j1939 import acceptance_filters
from drivers.can.options import CanDecodeOptions
from drivers.can.pipeline import Pipeline
from drivers.can.receiver import BusLost, BusOff, Receiver
from drivers.can.slcan import BufferedSlcanBus

LISTEN_ONLY_KWARGS: dict[str, dict[str, Any]] = {
    "slcan": {"listen_only": True},
    "cantact": {"monitor": True},
}
"""How to ask each interface for listen-only mode, for those python-can can ask."""
SO_RCVBUFFORCE = 33
SERIAL_INTERFACES = frozenset({"slcan", "serial", "robotell", "seeedstudio"})
"""python-can interfaces whose channel is a serial device path."""
"""Linux: set the receive buffer beyond net.core.rmem_max (with CAP_NET_ADMIN)."""
SLCAN_BITRATES = frozenset(
    (10_000, 20_000, 50_000, 83_300, 100_000, 125_000, 250_000, 500_000, 750_000, 1_000_000)
)


class CanBusOptions(CanDecodeOptions):
    interface: str = Field(default="socketcan", description="python-can interface name")
    channel: str = Field(default="can0", description="interface, serial port or device")
    bitrate: int = Field(
        default=250_000,
        gt=0,
        le=1_000_000,
        description="bit/s; FMS buses run at 250000 (socketcan: set by `ip link`, not here)",
    )
    listen_only: bool = Field(default=True, description="ask the adapter not to ACK or send")
    hardware_filters: bool = Field(
        default=True, description="kernel/adapter acceptance filters for the PGNs in use"
    )
    receive_buffer_bytes: int = Field(
        default=1 << 20,
        ge=0,
        le=64 << 20,
        description="socketcan: kernel receive buffer (1 MiB holds ~1,400 frames); 0: default",
    )
    busoff_reopen_s: float = Field(
        default=5.0, gt=0, le=3600, description="reopen when bus-off lasts this long"
    )
    bus_options: dict[str, Any] = Field(
        default_factory=dict,
        description="extra python-can keyword arguments, e.g. {sleep_after_open = 0} for slcan",
    )

    @field_validator("interface")
    @classmethod
    def _known_interface(cls, value: str) -> str:
        if value not in can.interfaces.VALID_INTERFACES:
            known = ", ".join(sorted(can.interfaces.VALID_INTERFACES))
            raise ValueError(f"unknown python-can interface {value!r}; known: {known}")
        return value

    @model_validator(mode="after")
    def _slcan_bitrate(self) -> "CanBusOptions":
        if self.interface == "slcan" and self.bitrate not in SLCAN_BITRATES:
            rates = ", ".join(str(r) for r in sorted(SLCAN_BITRATES))
            raise ValueError(f"bitrate {self.bitrate}: an slcan adapter runs at {rates}")
        return self


def _open_hint(options: CanBusOptions, exc: BaseException, *, lost: bool = False) -> str:
    """What the user should check, from what python-can or the kernel said."""
    ch, rate = options.channel, options.bitrate
    code = getattr(exc, "errno", None) or getattr(exc, "error_code", None)
    if options.interface == "socketcan":
        if code == errno.EAFNOSUPPORT:
            return "this kernel has no SocketCAN: `modprobe can-raw`, or use a USB (slcan) adapter"
        if code == errno.ENODEV:
            return (
                f"no CAN interface {ch}: is the MCP2515 overlay enabled (dtoverlay=mcp2515-can0 "
                f"in config.txt) and `ip link set {ch} up type can bitrate {rate}` done?"
            )
        if code == errno.ENETDOWN:
            return f"{ch} is down: `ip link set {ch} up type can bitrate {rate} restart-ms 100`"
        return f"cannot read {ch} ({exc}): check `ip -details link show {ch}`"
    if options.interface in SERIAL_INTERFACES:
        return (
            f"{'lost' if lost else 'cannot open'} the CAN adapter on {ch} ({exc}): "
            "is it plugged in? "
            "See `ls -l /dev/serial/by-id/` and use that stable path as channel"
        )
    return f"{'lost' if lost else 'cannot open'} {options.interface} channel {ch} ({exc})"


def has_hardware_filters(bus: can.BusABC) -> bool:
    """Whether the interface filters below Python (python-can's `_apply_filters` hook)."""
    return type(bus)._apply_filters is not can.BusABC._apply_filters


class CanBusDriver:
    """Reads one CAN interface until cancelled."""

    Options = CanBusOptions

    @classmethod
    def opens(cls, options: CanBusOptions) -> Opens:
        """A SocketCAN interface, or the serial port of an slcan (or similar) adapter."""
        channel, interface = options.channel, options.interface
        if interface == "virtual":
            return Opens(simulated="simulated CAN (python-can virtual bus)")
        if interface == "socketcan":
            up = f"sudo ip link set {channel} up type can bitrate {options.bitrate} restart-ms 100"
            return Opens(devices=(Device(channel, "netif", "channel", bring_up=up),))
        if interface in SERIAL_INTERFACES:
            return Opens(devices=(Device(channel, "serial", "channel"),))
        return Opens()

    def __init__(self, options: CanBusOptions) -> None:
        self.options = options
        self.decoders = options.decoders()

    def open(self, pipeline: Pipeline) -> can.BusABC:
        """The python-can bus, with filters where the interface applies them itself."""
        o = self.options
        kwargs: dict[str, Any] = {}
        if o.listen_only:
            kwargs.update(LISTEN_ONLY_KWARGS.get(o.interface, {}))
        kwargs.update(o.bus_options)
        bus: can.BusABC
        try:
            if o.interface == "slcan":  # python-can's, reading in chunks: see slcan.py
                bus = BufferedSlcanBus(channel=o.channel, bitrate=o.bitrate, **kwargs)
            else:
                bus = can.Bus(interface=o.interface, channel=o.channel, bitrate=o.bitrate, **kwargs)
        except (ValueError, TypeError) as exc:  # a bitrate or keyword the interface refuses
            raise ConfigError("can.bus options", [f"{o.interface}: {exc}"]) from exc
        except can.CanInterfaceNotImplementedError as exc:
            raise ConfigError(
                "can.bus options",
                [f"interface {o.interface} cannot run here ({exc}): install its library"],
            ) from exc
        except (can.CanError, OSError) as exc:
            raise DriverError(_open_hint(o, exc)) from exc
        if o.hardware_filters and has_hardware_filters(bus):
            bus.set_filters(acceptance_filters(pipeline.pgns_in_use()))
        return bus

    def enlarge_receive_buffer(self, bus: can.BusABC, log: logging.Logger) -> None:
        """A bigger kernel queue rides out a stalled process (SD card writes, a busy Pi):
        the default ~210 kB holds ~300 frames, 90 ms of a saturated 500 kbit/s bus."""
        sock = getattr(bus, "socket", None)
        size = self.options.receive_buffer_bytes
        if not isinstance(sock, socket.socket) or not size:
            return
        for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):  # FORCE needs CAP_NET_ADMIN
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, size)
                break
            except OSError:
                continue
        got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # Linux doubles it
        if got < size:
            log.warning(
                "the CAN receive buffer is %d bytes, not %d: raise the limit with "
                "`sysctl -w net.core.rmem_max=%d` or give edged CAP_NET_ADMIN",
                got,
                size,
                size,
            )

    async def run(self, ctx: DriverContext) -> None:
        table.forget()  # the decoders are built: the node holds no more of the DBC than them
        for note in self.decoders.notes:
            ctx.log.warning("%s", note)
        pipeline = Pipeline(
            self.decoders,
            min_interval_s=self.options.min_interval_s,
            doors=self.options.door_signals,
        )
        try:
            # off the loop: python-can's slcan sleeps 2 s after opening the port (adapters
            # that reset on open), which would hold every tap and door for that long
            bus = await asyncio.to_thread(self.open, pipeline)
        except DriverError:
            ctx.count("open_failed")
            raise
        self.enlarge_receive_buffer(bus, ctx.log)
        ctx.log.info(
            "reading %s %s at %d bit/s%s, %d PGNs",
            self.options.interface,
            self.options.channel,
            self.options.bitrate,
            " with acceptance filters" if bus.filters else "",
            len(self.decoders.pgns()),
        )
        ctx.ready()
        receiver = Receiver(
            pipeline,
            busoff_reopen_s=self.options.busoff_reopen_s,
            extra_counts=[lambda: {"filtered": bus.filtered}]
            if isinstance(bus, BufferedSlcanBus)
            else [],
        )
        try:
            await receiver.run(bus, ctx)
        except BusLost as exc:
            ctx.count("bus_error")
            raise DriverError(
                f"{_open_hint(self.options, exc.__cause__ or exc, lost=True)}; reopening"
            ) from exc
        except BusOff as exc:
            raise DriverError(
                f"{self.options.channel}: {exc}; reopening. Let the kernel recover by "
                f"itself: `ip link set {self.options.channel} type can restart-ms 100`"
            ) from exc
        finally:
            _shutdown(bus, ctx)


def _shutdown(bus: can.BusABC, ctx: DriverContext) -> None:
    """Close the bus; an adapter that is gone cannot be closed, and that is no new error."""
    try:
        bus.shutdown()
    except (can.CanError, OSError) as exc:
        ctx.log.debug("closing %s: %s", bus, exc)
