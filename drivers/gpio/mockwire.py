"""A control socket onto the mock pins of a running daemon, for the hardware-in-the-loop rig.

The GPS and CAN emulators give the real drivers a pseudo-terminal to talk to; GPIO has no
such wire, so with `pin_factory = "mock"` and `mock_control = "/run/edged/gpio.sock"` the
driver serves this line protocol on a unix socket, and a rig in another process plays the
outside world: it drives the input pins as a door contact or a beam would, and watches the
output pins as a relay or an LED would. It exists for the rig and the demo only: the
options refuse it unless the pin factory is the mock one, so no config can make it move
real pins. The socket is created mode 0600.

Protocol: ASCII lines ending in "\\n" ("\\r\\n" accepted), one answer line per request.
Pins are named as in the config (17, GPIO17, BOARD11); levels are electrical (1 = HIGH),
as on a wire — the rig applies the polarity the config states.

    ping              -> ok
    pins              -> ok 5:in:1 6:in:0 22:out:0 ...      (every pin of the board, level)
    get <pin>         -> ok <0|1>                            (any pin of the board)
    set <pin> <0|1>   -> ok                                  (input pins only)
    watch             -> ok, then "change <pin> <0|1> <t>" on every output change, with t
                         from time.monotonic() (one clock for every process on the host, so
                         the rig can time relay latency)
    unwatch           -> ok
    anything else     -> err <reason>

A line longer than 128 bytes, a non-ASCII one, or control characters get "err" (an
overlong line without end closes the connection); at most 8 clients; a watcher that does
not read is disconnected rather than buffered without end. Nothing a client sends reaches
the driver's task: a broken client is logged and dropped.
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from gpiozero.pins.mock import MockPin

from core.errors import DriverError
from drivers.gpio.pins import bcm

MAX_LINE = 128
MAX_CLIENTS = 8
MAX_BACKLOG = 64 * 1024
"""A watcher with this many bytes unsent is dropped: the rig stopped reading."""

Verb = Literal["ping", "pins", "get", "set", "watch", "unwatch"]
_ARITY: dict[str, int] = {"ping": 0, "pins": 0, "get": 1, "set": 2, "watch": 0, "unwatch": 0}


class ProtocolError(ValueError):
    """A request that cannot be served; the text is the reason sent back after "err"."""


@dataclass(frozen=True, slots=True)
class Request:
    verb: Verb
    pin: int | None = None
    level: bool | None = None


def _shown(token: str) -> str:
    """A client's token in an error, short and printable whatever they sent."""
    return repr(token[:20] + ("…" if len(token) > 20 else ""))


def parse(line: bytes) -> Request:
    """One request line (without its "\\n"); ProtocolError says what is wrong with it."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line too long (at most {MAX_LINE} bytes)")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("not ASCII") from None
    if any(not (c.isprintable() or c == "\t") for c in text):
        raise ProtocolError("control characters in the line")
    words = text.split()
    if not words:
        raise ProtocolError("empty line")
    verb, args = words[0], words[1:]
    if verb not in _ARITY:
        raise ProtocolError(f"unknown command {_shown(verb)}: ping, pins, get, set, watch, unwatch")
    if len(args) != _ARITY[verb]:
        usage = {"get": "get <pin>", "set": "set <pin> <0|1>"}.get(verb, verb)
        raise ProtocolError(f"usage: {usage}")
    pin: int | None = None
    level: bool | None = None
    if args:
        try:
            pin = bcm(args[0])
        except ValueError:
            raise ProtocolError(f"not a pin: {_shown(args[0])}") from None
    if verb == "set":
        if args[1] not in ("0", "1"):
            raise ProtocolError(f"level must be 0 or 1, not {_shown(args[1])}")
        level = args[1] == "1"
    return Request(verb, pin, level)  # type: ignore[arg-type]  # verb checked in _ARITY


class WirePin(Protocol):
    """What the wire needs of a board pin: its direction and gpiozero's pin object."""

    @property
    def direction(self) -> Literal["in", "out"]: ...

    @property
    def pin(self) -> Any: ...


Watcher = Callable[[int, bool, float], None]


class _Client:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.watcher: Watcher | None = None

    def send(self, line: str) -> None:
        if self.writer.is_closing():
            return
        if self.writer.transport.get_write_buffer_size() > MAX_BACKLOG:
            self.writer.close()  # not reading: drop it rather than hold the memory
            return
        self.writer.write(line.encode("ascii") + b"\n")


class MockWire:
    """Serves the protocol for one running board until closed."""

    def __init__(
        self, pins: Mapping[int, WirePin], watchers: list[Watcher], log: logging.Logger
    ) -> None:
        self.pins = pins
        self.watchers = watchers
        self.log = log
        self.path: Path | None = None
        self.server: asyncio.AbstractServer | None = None
        self.clients: set[_Client] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, path: Path) -> None:
        try:
            self.server = await asyncio.start_unix_server(self._serve, path=str(path))
            os.chmod(path, 0o600)
        except OSError as exc:
            raise DriverError(
                f"cannot serve the mock GPIO control socket at {path}: {exc.strerror or exc} "
                "(does its folder exist? is another file in the way?)"
            ) from exc
        self.path = path
        self.log.info("mock GPIO control socket at %s (test rig only)", path)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for client in list(self.clients):
            client.writer.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()
            self.server = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.path = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        client = _Client(writer)
        try:
            if len(self.clients) >= MAX_CLIENTS:
                client.send(f"err busy: at most {MAX_CLIENTS} clients")
                return
            self.clients.add(client)
            await self._converse(reader, client)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the rig went away
        except Exception:  # a bug here must not reach the driver
            self.log.exception("mock GPIO control connection failed")
        finally:
            self.clients.discard(client)
            if client.watcher is not None and client.watcher in self.watchers:
                self.watchers.remove(client.watcher)
            writer.close()
            self.tasks.discard(task)

    async def _converse(self, reader: asyncio.StreamReader, client: _Client) -> None:
        buffer = bytearray()
        while not client.writer.is_closing():
            chunk = await reader.read(4096)
            if not chunk:
                return
            buffer += chunk
            while (end := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:end])
                del buffer[: end + 1]
                client.send(self.answer(line, client))
            if len(buffer) > MAX_LINE:  # no end in sight: a stream, not a request
                client.send(f"err line too long (at most {MAX_LINE} bytes)")
                return
            await client.writer.drain()

    def answer(self, line: bytes, client: _Client) -> str:
        """The answer line to one request line."""
        try:
            request = parse(line)
            return self._do(request, client)
        except ProtocolError as exc:
            return f"err {exc}"
        except Exception as exc:  # the pin refused: say so, keep serving
            self.log.warning("mock GPIO control: %r failed: %s", line[:MAX_LINE], exc)
            return f"err {type(exc).__name__}"

    def _do(self, request: Request, client: _Client) -> str:
        verb = request.verb
        if verb == "ping":
            return "ok"
        if verb == "pins":
            levels = " ".join(
                f"{n}:{use.direction}:{int(bool(use.pin.state))}"
                for n, use in sorted(self.pins.items())
            )
            return f"ok {levels}".rstrip()
        if verb == "watch":
            if client.watcher is None:
                send = client.send

                def watcher(pin: int, level: bool, ts: float) -> None:
                    send(f"change {pin} {int(level)} {ts:.6f}")

                client.watcher = watcher
                self.watchers.append(watcher)
            return "ok"
        if verb == "unwatch":
            if client.watcher is not None:
                self.watchers.remove(client.watcher)
                client.watcher = None
            return "ok"
        assert request.pin is not None
        use = self.pins.get(request.pin)
        if use is None:
            raise ProtocolError(f"GPIO{request.pin} is not a pin of this board")
        if verb == "get":
            return f"ok {int(bool(use.pin.state))}"
        # set
        if use.direction != "in":
            raise ProtocolError(f"GPIO{request.pin} is an output: only inputs can be driven")
        if not isinstance(use.pin, MockPin):
            raise ProtocolError("not a mock pin")
        if request.level:
            use.pin.drive_high()
        else:
            use.pin.drive_low()
        return "ok"
