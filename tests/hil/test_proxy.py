"""The proxy's two ways to lose a link: `cut()` (both sides end now, the far side sees a
FIN) and `blackhole()` (as a dead zone: the far side hears nothing until it gives up)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from hil.proxy import MqttProxy


@dataclass
class Far:
    """A server behind the proxy that notes when its peer's end reaches it."""

    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    eof: asyncio.Event = field(default_factory=asyncio.Event)
    got: bytearray = field(default_factory=bytearray)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                self.got += data
        self.eof.set()


@pytest.fixture
async def far() -> AsyncIterator[tuple[Far, int]]:
    f = Far()
    server = await asyncio.start_server(f.serve, "127.0.0.1", 0)
    yield f, server.sockets[0].getsockname()[1]
    server.close()


async def linked(port: int) -> tuple[MqttProxy, asyncio.StreamReader, asyncio.StreamWriter]:
    proxy = await MqttProxy(port, raw=True).start()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"hello")
    await writer.drain()
    return proxy, reader, writer


async def test_a_cut_ends_the_far_side_at_once(far: tuple[Far, int]) -> None:
    f, port = far
    proxy, reader, _ = await linked(port)
    await asyncio.wait_for(_until(lambda: bytes(f.got) == b"hello"), 5)
    assert proxy.cut() == 2
    await asyncio.wait_for(f.eof.wait(), 5)
    assert await reader.read() == b""
    await proxy.close()


async def test_a_blackhole_ends_the_near_side_and_the_far_side_hears_nothing_until_it_ends(
    far: tuple[Far, int],
) -> None:
    f, port = far
    proxy, reader, writer = await linked(port)
    await asyncio.wait_for(_until(lambda: bytes(f.got) == b"hello"), 5)
    assert proxy.blackhole() == 1
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the near side ended
    with contextlib.suppress(ConnectionError):
        writer.write(b"lost")  # too late: into the zone
    await asyncio.sleep(0.5)
    assert not f.eof.is_set() and bytes(f.got) == b"hello"  # no FIN, nothing more
    f.writers[0].write(b"x" * 1000)  # the far side talks into the dead zone
    await f.writers[0].drain()
    f.writers[0].close()  # ...then gives up (its keepalive)
    await asyncio.wait_for(_until(lambda: proxy.connections[0].closed is not None), 5)
    conn = proxy.connections[0]
    assert (conn.up, conn.down, conn.holed) == (5, 0, 1000)
    await proxy.close()


async def test_a_new_connection_after_a_blackhole_passes_while_the_old_far_side_lingers(
    far: tuple[Far, int],
) -> None:
    f, port = far
    proxy, _, _ = await linked(port)
    await asyncio.wait_for(_until(lambda: len(f.writers) == 1 and bool(f.got)), 5)
    proxy.blackhole()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    await asyncio.wait_for(_until(lambda: len(f.writers) == 2), 5)
    f.writers[1].write(b"back")
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"back"
    assert not f.eof.is_set()  # the first far side is still open
    writer.close()
    await proxy.close()


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.02)
