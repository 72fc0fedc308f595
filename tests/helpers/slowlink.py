"""A slow uplink in front of a real broker: what the node sends goes at `rate` bytes a second.

The proxy's receive buffer is small, so what the link has not carried yet stays in the
node's socket, unacknowledged, as it does behind a real slow link (a large buffer here would
take it at once, and hide it from the node). What the broker sends goes at once.
"""

import asyncio
import contextlib
import socket
import time


class SlowLink:
    def __init__(self, broker_port: int, rate: float) -> None:
        self.broker_port = broker_port
        self.rate = rate  # bytes a second towards the broker; 0: nothing goes
        self.carried = 0  # bytes carried towards the broker so far
        self.starved = 0.0  # seconds it could carry and waited for the node's bytes
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> "SlowLink":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # before listen, so the connections inherit them: a receive window of a few KB
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_WINDOW_CLAMP, 4096)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        # a small limit: asyncio reads ahead into its buffer up to twice that
        self._server = await asyncio.start_server(self._serve, sock=sock, limit=1024)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        b_reader, b_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)
        up = asyncio.create_task(self._pump(reader, b_writer, slow=True))
        down = asyncio.create_task(self._pump(b_reader, writer, slow=False))
        self._tasks |= {up, down}
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        writer.close()
        b_writer.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, slow: bool
    ) -> None:
        while True:
            while slow and self.rate <= 0:
                await asyncio.sleep(0.01)
            waited = time.monotonic()
            data = await reader.read(512 if slow else 65536)
            if slow:
                self.starved += time.monotonic() - waited
            if not data:
                return
            if slow:
                await asyncio.sleep(len(data) / self.rate)
                self.carried += len(data)
            writer.write(data)
            await writer.drain()
