"""A TCP relay for tests: the bytes passed on, both ways, to a local port."""

import asyncio
import contextlib
import ssl


async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """`src`'s bytes on to `dst` until it ends, then `dst` closed."""
    with contextlib.suppress(OSError):
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    dst.close()


async def relay(
    upstream: int, *, port: int = 0, tls: ssl.SSLContext | None = None
) -> asyncio.Server:
    """Listen on `port` (0: any free one) and pass each connection's bytes on to
    `upstream`; with `tls`, end TLS here (a front that asks no client certificate, as a
    load balancer or a broker taking passwords does)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    return await asyncio.start_server(serve, "127.0.0.1", port, ssl=tls)
