"""A "broker" that answers a CONNECT with the bytes a test gives (a malformed CONNACK, a
huge packet's header...) and then reads on, saying nothing more, until the client closes:
a hostile or broken server, byte for byte. `connects`: the CONNECTs it read; `open`: the
connections the client has not closed."""

import asyncio
import contextlib
from collections.abc import AsyncIterator


class HostileBroker:
    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.connects = 0
        self.open = 0
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def _take(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.writers.add(writer)
        try:
            await _packet(reader)  # the CONNECT
            self.connects += 1
            writer.write(self.reply)
            await writer.drain()
            while await reader.read(4096):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            self.writers.discard(writer)
            writer.close()


async def _packet(reader: asyncio.StreamReader) -> bytes:
    """One MQTT packet: its fixed header's first byte, its remaining length, its body."""
    await reader.readexactly(1)
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return await reader.readexactly(length)


@contextlib.asynccontextmanager
async def hostile_broker(reply: bytes) -> AsyncIterator[HostileBroker]:
    broker = HostileBroker(reply)
    server = await asyncio.start_server(broker._take, "127.0.0.1", 0)
    broker.port = int(server.sockets[0].getsockname()[1])
    try:
        yield broker
    finally:
        server.close()
        for writer in list(broker.writers):  # its readers end with their connections
            writer.close()
        await asyncio.sleep(0)
