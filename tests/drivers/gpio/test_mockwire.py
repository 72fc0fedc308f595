"""The mock pins' control socket, spoken to over a real unix socket as the rig would."""

import asyncio
import os
import random
import shutil
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import given
from hypothesis import strategies as st

from core.events import DoorInput, Unlock
from drivers.gpio.mockwire import MAX_CLIENTS, MAX_LINE, ProtocolError, Request, parse
from tests.drivers.gpio.conftest import Start
from tests.drivers.gpio.fakes import Running, wait_until

DOOR, LOCK = 5, 17


@pytest.fixture
def sock() -> Iterator[Path]:
    """A short path: a unix socket path is at most 107 bytes, pytest's tmp_path can be more."""
    folder = tempfile.mkdtemp(prefix="gw", dir="/tmp")
    yield Path(folder) / "gpio.sock"
    shutil.rmtree(folder, ignore_errors=True)


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def ask(self, line: bytes | str) -> str:
        self.writer.write(line.encode() + b"\n" if isinstance(line, str) else line)
        return await self.line()

    async def line(self) -> str:
        return (await asyncio.wait_for(self.reader.readline(), 2)).decode().rstrip("\n")

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def board(start: Start, sock: Path) -> Running:
    return await start(
        mock_control=str(sock),
        doors=[{"name": "front", "pin": DOOR, "bounce_s": 0}],
        lock={"pin": LOCK},
    )


@pytest.fixture
async def client(board: Running, sock: Path) -> AsyncIterator[Client]:
    c = Client(*await asyncio.open_unix_connection(str(sock)))
    yield c
    c.close()


async def test_ping_answers_ok(client: Client) -> None:
    assert await client.ask("ping") == "ok"


async def test_pins_lists_every_pin_with_its_direction_and_level(client: Client) -> None:
    assert await client.ask("pins") == f"ok {DOOR}:in:1 {LOCK}:out:0"


async def test_set_drives_an_input_as_the_door_contact_would(
    board: Running, client: Client
) -> None:
    assert await client.ask("set BOARD29 0") == "ok"  # GPIO5, by its header position
    await wait_until(lambda: len(board.rec.of(DoorInput)) == 2, 1, "the door event")
    assert board.rec.of(DoorInput)[-1].open is False
    assert await client.ask(f"get {DOOR}") == "ok 0"


async def test_get_reads_an_output(board: Running, client: Client) -> None:
    board.rec.send(Unlock(1.0, time.monotonic()))
    assert await client.ask(f"get GPIO{LOCK}") == "ok 1"


async def test_watch_streams_output_changes_with_monotonic_times(
    board: Running, client: Client
) -> None:
    assert await client.ask("watch") == "ok"
    before = time.monotonic()
    board.rec.send(Unlock(0.02, before))
    on, off = await client.line(), await client.line()
    verb, pin, level, t_on = on.split()
    assert (verb, pin, level) == ("change", str(LOCK), "1")
    assert 0 <= float(t_on) - before < 0.01
    assert off.split()[:3] == ["change", str(LOCK), "0"]
    assert float(off.split()[3]) - float(t_on) == pytest.approx(0.02, abs=0.015)


async def test_unwatch_stops_the_stream(board: Running, client: Client) -> None:
    await client.ask("watch")
    assert await client.ask("unwatch") == "ok"
    board.rec.send(Unlock(0.01, time.monotonic()))
    assert await client.ask("ping") == "ok"  # no change line in between
    assert board.driver.board is not None and board.driver.board.watchers == []


@pytest.mark.parametrize(
    ("request_line", "answer"),
    [
        (f"set {LOCK} 1", f"err GPIO{LOCK} is an output: only inputs can be driven"),
        ("set 27 1", "err GPIO27 is not a pin of this board"),
        ("get 99", "err not a pin: '99'"),
        (f"set {DOOR} 2", "err level must be 0 or 1, not '2'"),
        ("set 5", "err usage: set <pin> <0|1>"),
        ("reboot", "err unknown command 'reboot': ping, pins, get, set, watch, unwatch"),
        ("", "err empty line"),
        ("PING", "err unknown command 'PING': ping, pins, get, set, watch, unwatch"),
    ],
)
async def test_bad_request_gets_an_error_and_the_connection_goes_on(
    client: Client, request_line: str, answer: str
) -> None:
    assert await client.ask(request_line) == answer
    assert await client.ask("ping") == "ok"


@pytest.mark.parametrize(
    "raw",
    [b"set 5 \xff\n", b"\x00\x01\x02\n", b"ping\x1b[2J\n", b"x" * (MAX_LINE + 1) + b"\n"],
)
async def test_hostile_bytes_get_an_error_not_a_crash(client: Client, raw: bytes) -> None:
    assert (await client.ask(raw)).startswith("err ")
    assert await client.ask("ping") == "ok"


async def test_crlf_line_ends_are_accepted(client: Client) -> None:
    assert await client.ask(b"ping\r\n") == "ok"


async def test_endless_line_is_refused_and_the_connection_closed(
    board: Running, client: Client
) -> None:
    client.writer.write(b"s" * 10_000)
    assert await client.line() == f"err line too long (at most {MAX_LINE} bytes)"
    assert await client.reader.read() == b""
    assert not board.task.done()


async def test_random_garbage_never_stops_the_driver(board: Running, sock: Path) -> None:
    rng = random.Random(7)
    for _ in range(20):
        c = Client(*await asyncio.open_unix_connection(str(sock)))
        c.writer.write(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600))))
        c.close()
    c = Client(*await asyncio.open_unix_connection(str(sock)))
    assert await c.ask("ping") == "ok"
    c.close()
    assert not board.task.done()


async def test_clients_beyond_the_limit_are_turned_away(board: Running, sock: Path) -> None:
    clients = [Client(*await asyncio.open_unix_connection(str(sock))) for _ in range(MAX_CLIENTS)]
    for c in clients:
        assert await c.ask("ping") == "ok"
    extra = Client(*await asyncio.open_unix_connection(str(sock)))
    assert (await extra.line()).startswith("err busy")
    for c in [*clients, extra]:
        c.close()


async def test_watcher_that_stops_reading_is_dropped(board: Running, sock: Path) -> None:
    c = Client(*await asyncio.open_unix_connection(str(sock)))
    assert await c.ask("watch") == "ok"
    assert board.driver.board is not None
    watchers = board.driver.board.watchers
    assert len(watchers) == 1
    for _ in range(40_000):  # ~1.2 MB of change lines the client never reads
        watchers[0](LOCK, True, time.monotonic())
    await wait_until(lambda: watchers == [], 2, "the slow watcher to be dropped")
    c.close()


async def test_socket_is_private_to_the_daemon_user(board: Running, sock: Path) -> None:
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600


async def test_socket_is_removed_when_the_driver_stops(board: Running, sock: Path) -> None:
    board.task.cancel()
    await asyncio.gather(board.task, return_exceptions=True)
    assert not sock.exists()


async def test_stale_socket_from_a_crashed_run_is_replaced(
    start: Start, sock: Path, factory: MockFactory
) -> None:
    import socket

    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()
    r = await start(mock_control=str(sock), lock={"pin": LOCK})
    c = Client(*await asyncio.open_unix_connection(str(sock)))
    assert await c.ask("ping") == "ok"
    c.close()
    assert not r.task.done()


async def test_socket_in_a_missing_folder_is_a_driver_error(start: Start, sock: Path) -> None:
    from core.errors import DriverError

    with pytest.raises(DriverError, match="does its folder exist"):
        await start(mock_control=str(sock.parent / "nope" / "g.sock"), lock={"pin": LOCK})


# -- the parser alone ---------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_parser_answers_any_bytes_with_a_request_or_a_protocol_error(raw: bytes) -> None:
    try:
        request = parse(raw)
    except ProtocolError as exc:
        assert str(exc)
        assert len(str(exc)) < 200  # never echoes a whole hostile line back
    else:
        assert request.verb in ("ping", "pins", "get", "set", "watch", "unwatch")


@given(
    st.integers(0, 27),
    st.sampled_from(["{}", "GPIO{}", "BCM{}"]),
    st.booleans(),
    st.sampled_from([" ", "  ", "\t"]),
)
def test_parser_reads_every_valid_set(pin: int, spelling: str, level: bool, space: str) -> None:
    line = f"set{space}{spelling.format(pin)}{space}{int(level)}".encode()
    assert parse(line) == Request("set", pin, level)
